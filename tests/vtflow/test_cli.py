"""The vtflow command line, run as a user runs it (a subprocess) against this session's server."""

import os
import subprocess
import sys
import uuid

import pytest
import yaml

from blocks.mysql import MySQLCredentials
from blocks.nodes import SSHNodes
from blocks.target import VitessTarget


def vtflow(*args, env=None, cwd=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "vtflow.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL)


def write_inventory(tmp_path, bed, nodes):
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(bed.inventory(nodes)))
    return path


def test_block_create_nodes_from_files(prefect_server, node_bed, nodes, tmp_path):
    inv = write_inventory(tmp_path, node_bed, nodes[:3])
    kh = tmp_path / "known_hosts"
    kh.write_text(node_bed.known_hosts(nodes) + "[10.9.9.9]:22 ssh-ed25519 " + nodes[0].host_key_line.split()[2] + "\n")
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(inv), "--key", str(node_bed.client_key),
               "--known-hosts", str(kh))
    assert r.returncode == 0, r.stderr
    assert "PRIVATE KEY" not in r.stdout + r.stderr
    block = SSHNodes.load(name)
    assert [n.name for n in block.nodes] == ["node1", "node2", "node3"]
    assert block.known_hosts.splitlines() == [n.host_key_line for n in nodes[:3]], "only the inventory's nodes are kept"
    assert block.private_key.get_secret_value() == node_bed.client_key.read_text()

    again = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(inv), "--key", str(node_bed.client_key),
                   "--known-hosts", str(kh))
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr


def test_block_create_nodes_lists_everything_missing(prefect_server, node_bed, nodes, tmp_path):
    inv = write_inventory(tmp_path, node_bed, nodes[:3])
    kh = tmp_path / "known_hosts"
    kh.write_text(nodes[0].host_key_line + "\n")
    r = vtflow("block", "create", "nodes", "--name", "never-saved", "--inventory", str(inv), "--known-hosts", str(kh))
    assert r.returncode == 2
    assert "--key FILE" in r.stderr
    assert f"ssh-keyscan -p {nodes[1].port} {nodes[1].address}" in r.stderr
    assert f"ssh-keyscan -p {nodes[2].port} {nodes[2].address}" in r.stderr
    assert "node1" not in r.stderr.split("missing:")[1]


def test_block_create_nodes_can_scan_host_keys_on_request(prefect_server, node_bed, nodes, tmp_path):
    inv = write_inventory(tmp_path, node_bed, nodes[:2])
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(inv), "--key", str(node_bed.client_key),
               "--scan-host-keys")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("SHA256:") == 2
    assert SSHNodes.load(name).known_hosts.splitlines() == [n.host_key_line for n in nodes[:2]]


def test_block_create_mysql_reads_the_password_from_the_environment(prefect_server):
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "mysql", "--name", name, "--user", "app", "--password-env", "VT_PW",
               env={"VT_PW": "pw-from-env-7731"})
    assert r.returncode == 0, r.stderr
    assert MySQLCredentials.load(name).password.get_secret_value() == "pw-from-env-7731"
    missing = vtflow("block", "create", "mysql", "--name", name + "x", "--password-env", "VT_PW_UNSET")
    assert missing.returncode == 2 and "VT_PW_UNSET: is not set" in missing.stderr
    no_tty = vtflow("block", "create", "mysql", "--name", name + "y")
    assert no_tty.returncode == 2 and "--password-env" in no_tty.stderr


def test_block_create_target_inlines_certificate_files(prefect_server, tmp_path):
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    kc = tmp_path / "k3s.yaml"
    kc.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "default", "cluster": {"server": "https://10.0.0.11:6443", "certificate-authority": "ca.crt"}}],
        "users": [{"name": "default", "user": {"token": "t0ken"}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    }))
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = vtflow("block", "create", "target", "--name", name, "--kubeconfig", str(kc), "--namespace", "vitess",
               "--registry-mirror", "harbor.lan/vitess")
    assert r.returncode == 0, r.stderr
    t = VitessTarget.load(name)
    assert (t.namespace, t.registry_mirror) == ("vitess", "harbor.lan/vitess")
    cluster = yaml.safe_load(t.kubeconfig.get_secret_value())["clusters"][0]["cluster"]
    assert "certificate-authority" not in cluster and cluster["certificate-authority-data"]

    bad = vtflow("block", "create", "target", "--name", name + "z", "--kubeconfig", str(kc), "--context", "nope")
    assert bad.returncode == 2 and "context 'nope' is not in the kubeconfig" in bad.stderr


def test_node_prep_command_runs_the_flow(prefect_server, node_bed, nodes, tmp_path):
    from helpers import nodes_block, save_nodes_block

    name = save_nodes_block(nodes_block(node_bed, nodes[:2]))
    r = vtflow("node-prep", "--nodes", name, "--min-memory-gib", "1", "--min-disk-gib", "0.1", "--min-cpus", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith("node")]
    assert len(lines) == 2 and all("k3s=ok" in l and "memory=ok" in l for l in lines)
    r = vtflow("node-prep", "--nodes", name, "--min-memory-gib", "100000")
    assert r.returncode == 1 and "checks failed on node1, node2" in r.stderr


def test_sandbox_commands_parse_to_the_sandbox_module():
    from vtflow.cli import build_parser, cmd_sandbox_down, cmd_sandbox_status, cmd_sandbox_up

    p = build_parser()
    up = p.parse_args(["sandbox", "up", "--small"])
    assert up.func is cmd_sandbox_up and up.small and up.node_memory is None
    assert p.parse_args(["sandbox", "up", "--node-memory", "4Gi"]).node_memory == "4Gi"
    assert p.parse_args(["sandbox", "down"]).func is cmd_sandbox_down
    assert p.parse_args(["sandbox", "status"]).func is cmd_sandbox_status


def test_commands_use_make_ups_server_when_no_api_url_is_set(prefect_server):
    """Without PREFECT_API_URL, blocks go to the server `make up` runs (VTFLOW_HOST/PORT), not to
    a throwaway in-process one."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(VT_PW="pw-via-make-up-default", PREFECT_PROFILES_PATH=os.devnull)
    name = f"cli-{uuid.uuid4().hex[:6]}"
    r = subprocess.run([sys.executable, "-m", "vtflow.cli", "block", "create", "mysql", "--name", name,
                        "--password-env", "VT_PW"], capture_output=True, text=True, env=env, timeout=120,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr[-2000:]
    assert MySQLCredentials.load(name).password.get_secret_value() == "pw-via-make-up-default"


def test_deploy_until_choices_are_the_flows_steps():
    from flows.deploy import STEPS
    from vtflow.cli import build_parser

    until = next(a for a in build_parser()._subparsers._group_actions[0].choices["deploy"]._actions
                 if a.dest == "until")
    assert tuple(until.choices) == STEPS


def test_deploy_takes_over_a_conflicting_field_only_with_force_conflicts(prefect_server, tmp_path):
    """A field another manager set (here the operator image, as the redeploy flow writes it) fails
    `vtflow deploy` naming the manager and the flag; `--force-conflicts` takes it back."""
    from helpers import OPERATOR_YAML
    from kubedouble import DoubleConfig, KubeDouble
    from vtflow import kube

    with KubeDouble(DoubleConfig(nodes=1, git_version="v1.33.5+k3s1")) as d:
        kubeconfig = d.kubeconfig(tmp_path / "kubeconfig").read_text()
        name = f"cli-{uuid.uuid4().hex[:6]}"
        VitessTarget(kubeconfig=kubeconfig).save(name)
        MySQLCredentials(user="user", password="pw-cli-1").save(name)
        args = ("deploy", "--target", name, "--no-node-prep", "--until", "vitess-operator",
                "--operator-manifest", OPERATOR_YAML)
        first = vtflow(*args)
        assert first.returncode == 0, first.stderr[-3000:]
        k = kube.Kube(kube.api_client(kubeconfig, None, "t"))
        image = "harbor.lan/vitess/vitess-operator@sha256:" + "c" * 64
        spec_image = k.get("apps/v1", "Deployment", "vitess-operator", "example")["spec"]["template"]["spec"][
            "containers"][0]["image"]
        k.patch("apps/v1", "Deployment", "vitess-operator", "example",
                {"spec": {"template": {"spec": {"containers": [{"name": "vitess-operator", "image": image}]}}}},
                manager="vtflow-redeploy")

        def running() -> str:
            dep = k.get("apps/v1", "Deployment", "vitess-operator", "example")
            return dep["spec"]["template"]["spec"]["containers"][0]["image"]
        assert running() == image

        refused = vtflow(*args)
        assert refused.returncode == 1
        last = refused.stderr.strip().splitlines()[-1]
        assert "Deployment example/vitess-operator: conflict" in refused.stderr
        assert "field manager 'vtflow-redeploy' owns" in refused.stderr
        assert "--force-conflicts" in last and "(parameter force_conflicts)" in last
        assert running() == image

        forced = vtflow(*args, "--force-conflicts")
        assert forced.returncode == 0, forced.stderr[-3000:]
        assert running() == spec_image != image


def _kubeconfig(**changes) -> dict:
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "default",
        "clusters": [{"name": "default", "cluster": {"server": "https://10.0.0.11:6443", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "default", "user": {"token": "kube-secret-token-8841"}}],
        "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default"}}],
    }
    config.update(changes)
    return config


def test_block_create_target_refuses_bad_input_in_one_line_per_problem(prefect_server, tmp_path, capsys):
    """Each bad kubeconfig or option is the CLI's last line(s), `error: <subject>: <problem> Fix: <fix>`,
    one per bad field: no traceback, no pydantic dump, no secret, nothing saved. The first and the
    last case run the command as a user does (a process of its own); the others call the same
    entry point, `vtflow.cli.main`, in this process (each process costs seconds of imports)."""
    from types import SimpleNamespace

    from vtflow import cli

    def inline(*args):
        capsys.readouterr()
        rc = cli.main(list(args))
        return SimpleNamespace(returncode=rc, stderr=capsys.readouterr().err)

    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_kubeconfig()))
    files = {
        "not-yaml": "clusters: [\n  token: kube-secret-token-8841: x\n",
        "a-string": "kube-secret-token-8841\n",
        "empty": "",
        "no-contexts": yaml.safe_dump(_kubeconfig(contexts=[])),
        "no-current-context": yaml.safe_dump({k: v for k, v in _kubeconfig().items() if k != "current-context"}),
        "ca-not-base64": yaml.safe_dump(_kubeconfig(clusters=[{"name": "default", "cluster": {
            "server": "https://10.0.0.11:6443", "certificate-authority-data": "kube-secret-token-8841"}}])),
    }
    problems = {"not-yaml": "is not YAML", "a-string": "is a YAML string", "empty": "is empty",
                "no-contexts": "no clusters or contexts", "no-current-context": "no current-context",
                "ca-not-base64": "certificate-authority-data is not base64"}
    cases = [([f"--kubeconfig={tmp_path / name}.yaml"], [f"kubeconfig {tmp_path / name}.yaml: ", problems[name]])
             for name in files]
    cases += [
        (["--namespace", "Vitess"], ["--namespace: 'Vitess' is not a DNS-1123 label"]),
        (["--vtgate-address", "10.0.0.11"], ["--vtgate-address: '10.0.0.11' is not host:port"]),
        (["--vtgate-address", "10.0.0.11:70000"], ["--vtgate-address:", "port must be 1-65535"]),
        (["--registry-mirror", "https://harbor.lan/vitess"], ["--registry-mirror:", "has a scheme"]),
        (["--namespace", "a" * 64, "--vtgate-address", "db:0", "--node-address", "10.0.0.11:30306"],
         ["--namespace:", "--vtgate-address:", "--node-address:", "this one has 64", "port must be 1-65535", "no port"]),
    ]
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    tried = []
    for i, (options, expected) in enumerate(cases):
        if not options[0].startswith("--kubeconfig"):
            options = ["--kubeconfig", str(good), *options]
        name = f"cli-{uuid.uuid4().hex[:6]}"
        tried.append(name)
        r = (vtflow if i in (0, len(cases) - 1) else inline)("block", "create", "target", "--name", name, *options)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2, (options, r.stderr[-2000:])
        assert "Traceback" not in r.stderr and "kube-secret-token-8841" not in r.stderr, (options, r.stderr)
        assert "validation error" not in r.stderr and "pydantic" not in r.stderr, (options, r.stderr)
        want_lines = sum(text.endswith(":") and text.startswith("--") for text in expected) or 1
        assert len(lines) == want_lines, (options, lines)
        assert all(line.startswith("error: ") and " Fix: " in line for line in lines), (options, lines)
        for text in expected:
            assert any(text in line for line in lines), (options, text, lines)
    for name in tried:  # nothing was saved
        with pytest.raises(ValueError):
            VitessTarget.load(name)


def test_block_create_nodes_reads_known_hosts_markers_and_hashed_names(prefect_server, node_bed, nodes, tmp_path):
    """`@cert-authority` lines are skipped (vtflow does not verify host certificates), hashed names
    work, and a node whose key is `@revoked` is listed as missing, even when another line trusts it.
    paramiko's reader made the markers a traceback ("Incorrect padding")."""
    import paramiko

    a, b, c = nodes[:3]
    host_c, keytype_c, key_c = c.host_key_line.split()
    hashed_c = f"{paramiko.HostKeys.hash_host(host_c)} {keytype_c} {key_c}"
    ca = f"@cert-authority *.lan,[127.0.0.*]:* {keytype_c} {key_c}"
    kh = tmp_path / "known_hosts"
    kh.write_text("\n".join([ca, a.host_key_line, b.host_key_line, f"@revoked {b.host_key_line}", hashed_c]) + "\n")
    name = f"cli-{uuid.uuid4().hex[:6]}"
    refused = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(write_inventory(tmp_path, node_bed, [a, b, c])),
                     "--key", str(node_bed.client_key), "--known-hosts", str(kh))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    listed = refused.stderr.split("missing:")[1]
    assert f"host key of node {b.name} ({b.address}:{b.port}) (its key in the known_hosts given is @revoked)" in listed
    assert a.name not in listed and c.name not in listed

    made = vtflow("block", "create", "nodes", "--name", name, "--inventory", str(write_inventory(tmp_path, node_bed, [a, c])),
                  "--key", str(node_bed.client_key), "--known-hosts", str(kh))
    assert made.returncode == 0, made.stderr[-2000:]
    assert SSHNodes.load(name).known_hosts.splitlines() == [a.host_key_line, c.host_key_line]

    kh.write_text(a.host_key_line + "\n@revoked\n")
    bad = vtflow("block", "create", "nodes", "--name", name + "x", "--inventory", str(write_inventory(tmp_path, node_bed, [a])),
                 "--key", str(node_bed.client_key), "--known-hosts", str(kh))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith(f"error: known_hosts {kh} line 2: ")
