"""vtflow.ssh against real sshd nodes: host keys, keys, commands, errors."""

import subprocess

import pytest

from testbed import NODE_USER, free_port
from vtflow import ssh
from vtflow.errors import AuthError, ConfigError, HostKeyError, TransientError, UnreachableError


def _key(bed):
    return ssh.load_private_key(bed.client_key.read_text(), None, "test key")


def test_runs_a_command_with_stdin_and_exit_status(node_bed, nodes):
    n = nodes[0]
    trusted = ssh.parse_known_hosts(node_bed.known_hosts([n]), "test")
    with ssh.connect(ssh.Endpoint(n.name, n.address, n.port), NODE_USER, _key(node_bed), trusted) as s:
        r = s.run("sh -s", stdin="read x; echo got-$x; echo err >&2; exit 3\n")
    assert (r.exit_status, r.stdout, r.stderr) == (3, "got-\n", "err\n")
    assert r.ended_at >= r.started_at


def test_large_output_on_both_streams_does_not_deadlock(node_bed, nodes):
    n = nodes[0]
    trusted = ssh.parse_known_hosts(node_bed.known_hosts([n]), "test")
    with ssh.connect(ssh.Endpoint(n.name, n.address, n.port), NODE_USER, _key(node_bed), trusted) as s:
        r = s.run("i=0; while [ $i -lt 3000 ]; do echo $i-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; echo $i-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb >&2; i=$((i+1)); done", timeout=60)
    assert r.exit_status == 0
    assert len(r.stdout.splitlines()) == 3000 and len(r.stderr.splitlines()) == 3000


def test_command_timeout_is_transient(node_bed, nodes):
    n = nodes[0]
    trusted = ssh.parse_known_hosts(node_bed.known_hosts([n]), "test")
    with ssh.connect(ssh.Endpoint(n.name, n.address, n.port), NODE_USER, _key(node_bed), trusted) as s:
        with pytest.raises(TransientError, match="did not finish within 1 s"):
            s.run("sleep 5", timeout=1)  # the remote sleep is the slow command under test


def test_unknown_host_key_is_refused_with_the_line_to_add(node_bed, nodes):
    n = nodes[0]
    with pytest.raises(HostKeyError) as e:
        ssh.connect(ssh.Endpoint(n.name, n.address, n.port), NODE_USER, _key(node_bed), ssh.parse_known_hosts("", "t"))
    assert n.host_key_line in str(e.value)
    assert f"node {n.name} ({n.address}:{n.port})" in str(e.value)


def test_changed_host_key_is_refused(node_bed, nodes):
    a, b = nodes[0], nodes[1]
    forged = b.host_key_line.replace(f"[{b.address}]:{b.port}", f"[{a.address}]:{a.port}")
    with pytest.raises(HostKeyError, match="host key changed") as e:
        ssh.connect(ssh.Endpoint(a.name, a.address, a.port), NODE_USER, _key(node_bed), ssh.parse_known_hosts(forged, "t"))
    assert a.host_key_line in str(e.value)


def test_wrong_key_is_an_auth_error(node_bed, nodes):
    n = nodes[0]
    wrong = ssh.load_private_key(node_bed.wrong_key.read_text(), None, "wrong")
    with pytest.raises(AuthError, match=f"user '{NODE_USER}' was refused"):
        ssh.connect(ssh.Endpoint(n.name, n.address, n.port), NODE_USER, wrong, ssh.parse_known_hosts(node_bed.known_hosts([n]), "t"))


def test_nothing_listening_is_unreachable(node_bed):
    port = free_port("127.0.0.99")
    with pytest.raises(UnreachableError, match="cannot connect") as e:
        ssh.connect(ssh.Endpoint("ghost", "127.0.0.99", port), "x", _key(node_bed), ssh.parse_known_hosts("", "t"), timeout=2)
    assert f"node ghost (127.0.0.99:{port})" in str(e.value)


def test_fetch_host_key_returns_the_nodes_line(node_bed, nodes):
    n = nodes[2]
    assert ssh.fetch_host_key(ssh.Endpoint(n.name, n.address, n.port)) == n.host_key_line


def test_bad_known_hosts_line_names_the_line():
    with pytest.raises(ConfigError, match="known_hosts line 2"):
        ssh.parse_known_hosts("# comment\nnot-a-key-line\n", "known_hosts")


def test_encrypted_key_without_passphrase_says_so(tmp_path):
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret-pass", "-f", str(key)], check=True)
    with pytest.raises(ConfigError, match="encrypted and no passphrase"):
        ssh.load_private_key(key.read_text(), None, "key file")
    assert ssh.load_private_key(key.read_text(), "s3cret-pass", "key file").get_name() == "ssh-ed25519"


def test_garbage_key_is_a_config_error():
    with pytest.raises(ConfigError, match="could not be read"):
        ssh.load_private_key("hello", None, "key file")



def _connect(bed, n, known_hosts_text):
    return ssh.connect(ssh.Endpoint(n.name, n.address, n.port), NODE_USER, _key(bed),
                       ssh.parse_known_hosts(known_hosts_text, "known_hosts"))


def test_a_revoked_key_is_refused_even_when_another_line_trusts_it(node_bed, nodes):
    n, other = nodes[0], nodes[1]
    revoked_everywhere = "@revoked * " + " ".join(n.host_key_line.split()[1:])
    for text in (f"{n.host_key_line}\n@revoked {n.host_key_line}\n",      # trusted, then revoked
                 f"{revoked_everywhere}\n{n.host_key_line}\n",            # revoked by pattern first
                 f"@revoked {n.host_key_line}\n",                         # revoked only
                 (f"{n.host_key_line.split()[0]} {' '.join(other.host_key_line.split()[1:])}\n"
                  f"@revoked {n.host_key_line}\n")):                      # another key trusted for the host
        with pytest.raises(HostKeyError, match="is revoked \\(known_hosts line [12] marks it @revoked\\)") as e:
            _connect(node_bed, n, text)
        assert "before logging in" in str(e.value)


def test_cert_authority_lines_are_skipped_and_hashed_names_work(node_bed, nodes):
    import paramiko

    n = nodes[0]
    host, keytype, key = n.host_key_line.split()
    ca = f"@cert-authority [127.0.0.*]:* {keytype} {key}"
    with _connect(node_bed, n, f"{ca}\n|1|{'A' * 27}=|{'B' * 27}= {keytype} {key}\n"
                  f"{paramiko.HostKeys.hash_host(host)} {keytype} {key} comment\n") as s:
        assert s.run("echo hi").stdout == "hi\n"
    with pytest.raises(HostKeyError, match="line 1 is a @cert-authority line for this host, but vtflow does not "
                                           "verify host certificates"):
        _connect(node_bed, n, ca + "\n")


@pytest.mark.parametrize("line,problem", [
    ("@revoked [10.0.0.1]:22 ssh-ed25519", "is not a known_hosts line"),
    ("@trusted 10.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5", "unknown marker '@trusted'"),
    ("10.0.0.1 ssh-ed25519 not*base64", "is not base64"),
    ("10.0.0.1 ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQ==", "not a valid ssh-ed25519 key"),
    ("|1|short|x ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDlgLFW7R0GJ2rGTsS2w2x2hoNGvuKF2Ta5OFK/QVDxh", "hashed host name"),
])
def test_a_malformed_line_names_its_number_and_never_its_key(line, problem):
    with pytest.raises(ConfigError, match=f"known_hosts line 3: .*{problem}") as e:
        ssh.parse_known_hosts(f"# comment\n\n{line}\n", "known_hosts")
    assert "Fix: " in str(e.value) and "AAAA" not in str(e.value)


def test_a_key_type_paramiko_cannot_use_is_skipped():
    # it could never be negotiated, so it matches no connection; other lines still count
    assert ssh.parse_known_hosts("h sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29t\n", "k").lines == []
