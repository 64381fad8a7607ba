"""The sshd nodes' files: config, reachability for the node user, repeatable preparation."""

import os
import tempfile
from pathlib import Path

import pytest

from vtflow.errors import ConfigError
from vtflow.sandbox import nodes as nodes_mod
from vtflow.sandbox.nodes import SSHNodeBed, SSHNodeEnv, invoking_user, proc_files, sshd_config, unreachable_folder


def test_sshd_config_logs_in_only_the_node_user_by_key():
    node = SSHNodeEnv("node1", "127.0.0.2", 2201, Path("/s/nodes/node1"))
    text = sshd_config(node, Path("/s/nodes/authorized_keys"), Path("/s/nodes/sysbin"), "alice")
    assert "Port 2201\nListenAddress 127.0.0.2\n" in text
    assert "AllowUsers alice" in text and "PasswordAuthentication no" in text
    assert "SetEnv PATH=/s/nodes/node1/bin:/s/nodes/sysbin VTFLOW_NODE_DIR=/s/nodes/node1" in text


def test_unreachable_folder_names_the_first_closed_one(tmp_path):
    closed = tmp_path / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    try:
        assert unreachable_folder(closed / "inner") in (closed, *closed.parents)
    finally:
        closed.chmod(0o755)
    assert unreachable_folder(Path("/usr/bin")) is None


def test_standins_are_executable_and_packaged():
    tools = {p.name for p in nodes_mod.STANDINS.iterdir()}
    assert tools == {"apt-get", "awk", "k3s", "sudo", "systemctl", "timedatectl", "wg"}
    assert all(os.access(p, os.X_OK) for p in nodes_mod.STANDINS.iterdir())


def test_a_node_of_a_size_reports_it_as_proc_does():
    files = proc_files("2", "4Gi")
    assert files["proc_meminfo"] == "MemTotal: 4194304 kB\nMemAvailable: 2097152 kB"
    assert files["proc_cpuinfo"].count("processor") == 2
    assert proc_files("1", "2Gi")["proc_meminfo"].endswith("MemAvailable: 0 kB")


def test_the_simulated_k3s_takes_what_the_preflight_reserves():
    from tasks.cluster import K3S_SERVER_RESERVE

    assert nodes_mod.K3S_SERVER_MEMORY == K3S_SERVER_RESERVE[1]


def test_the_nodes_log_in_the_user_running_them_by_default(tmp_path):
    bed = SSHNodeBed(1, root=tmp_path / "nodes")
    assert bed.user == invoking_user() and bed.inventory()["user"] == invoking_user()


@pytest.fixture
def open_dir():
    d = Path(tempfile.mkdtemp(prefix="vtflow-nodes-test-"))
    d.chmod(0o755)
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def test_prepare_is_repeatable_and_keeps_keys_ports_and_state(open_dir):
    first = SSHNodeBed(2, root=open_dir / "nodes", ports=[2301, 2302], k3s_version="v1.33.5+k3s1").prepare()
    assert [n.port for n in first.nodes] == [2301, 2302]
    assert (first.nodes[0].state / "k3s-version").read_text() == "v1.33.5+k3s1\n"
    first.nodes[0].set_state(ntp="no")
    key = first.client_key.read_text()
    again = SSHNodeBed(2, root=open_dir / "nodes", ports=[2301, 2302]).prepare()
    assert again.client_key.read_text() == key
    assert again.known_hosts() == first.known_hosts()
    assert (again.nodes[0].state / "ntp").read_text() == "no\n", "an existing node's state is kept"


def test_prepare_refuses_a_folder_another_node_user_cannot_enter(open_dir):
    # root preparing nodes that log in another user (the tests' bed): that user must reach the keys
    from testbed import NODE_USER

    open_dir.chmod(0o700)
    with pytest.raises(ConfigError) as e:
        SSHNodeBed(1, root=open_dir / "nodes", user=NODE_USER).prepare()
    assert str(open_dir) in str(e.value) and "VTFLOW_STATE_DIR" in str(e.value)


def _standin(tool: str, node: Path, *args: str) -> str:
    import subprocess

    done = subprocess.run([str(nodes_mod.STANDINS / tool), *args], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "VTFLOW_NODE_DIR": str(node), "STANDIN_SUDO": "1"})
    return done.stdout


def test_the_probe_reads_the_node_s_size_where_it_has_one_and_the_machine_s_otherwise(tmp_path):
    import subprocess

    from tasks.node_prep import MEMINFO_LINES, parse_probe

    node = tmp_path / "node"
    (node / "state").mkdir(parents=True)
    env_node = SSHNodeEnv("node-2", "127.0.0.3", 2202, node)
    env_node.set_state(**proc_files("1", "2Gi"))
    program, files = MEMINFO_LINES.split("'")[1], ("/proc/meminfo", "/proc/cpuinfo")
    facts = parse_probe(_standin("awk", node, program, *files))
    assert (facts["cpus"], facts["mem_total_kb"], facts["mem_available_kb"]) == ("1", str(2 * 1024 * 1024), "0")
    (node / "state" / "proc-meminfo").unlink()
    (node / "state" / "proc-cpuinfo").unlink()
    real = parse_probe(subprocess.run(["awk", program, *files], capture_output=True, text=True).stdout)
    assert parse_probe(_standin("awk", node, program, *files))["mem_total_kb"] == real["mem_total_kb"]


def test_fresh_handshakes_stay_fresh_and_a_stale_one_stays_stale(tmp_path):
    import time

    node = SSHNodeEnv("node-1", "127.0.0.2", 2201, tmp_path / "node")
    (node.dir / "state").mkdir(parents=True)
    node.peers = ["node-2", "node-3"]
    node.set_state(wg_dump=node.wg_dump(nodes_mod.FRESH, stale=("node-3",), stale_at=1000))
    lines = _standin("wg", node.dir, "show", "all", "dump").splitlines()
    handshakes = [int(line.split()[5]) for line in lines[1:]]
    assert abs(handshakes[0] - (time.time() - 5)) < 3, "a fresh peer's handshake is a few seconds old at every read"
    assert handshakes[1] == 1000
