"""The sshd nodes' files: config, reachability for the node user, repeatable preparation."""

import os
import tempfile
from pathlib import Path

import pytest

from vtflow.errors import ConfigError
from vtflow.sandbox import nodes as nodes_mod
from vtflow.sandbox.nodes import NODE_USER, SSHNodeBed, SSHNodeEnv, sshd_config, unreachable_folder


def test_sshd_config_logs_in_only_the_node_user_by_key():
    node = SSHNodeEnv("node1", "127.0.0.2", 2201, Path("/s/nodes/node1"))
    text = sshd_config(node, Path("/s/nodes/authorized_keys"), Path("/s/nodes/sysbin"))
    assert "Port 2201\nListenAddress 127.0.0.2\n" in text
    assert f"AllowUsers {NODE_USER}" in text and "PasswordAuthentication no" in text
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
    assert tools == {"apt-get", "k3s", "sudo", "systemctl", "timedatectl", "wg"}
    assert all(os.access(p, os.X_OK) for p in nodes_mod.STANDINS.iterdir())
    assert os.access(nodes_mod.NODE_USER_SCRIPT, os.R_OK)


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


def test_prepare_refuses_a_folder_the_node_user_cannot_enter(open_dir):
    open_dir.chmod(0o700)
    with pytest.raises(ConfigError) as e:
        SSHNodeBed(1, root=open_dir / "nodes").prepare()
    assert str(open_dir) in str(e.value) and "VTFLOW_STATE_DIR" in str(e.value)
