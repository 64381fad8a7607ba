"""The sandbox blocks: saved only when they differ, deleted on request."""

import pytest

from blocks import MySQLCredentials, VitessTarget
from vtflow.errors import UnreachableError
from vtflow.sandbox import prefect_blocks as pb
from vtflow.sandbox.procs import free_port

KUBECONFIG = """apiVersion: v1
clusters: [{name: c, cluster: {server: "http://127.0.0.1:1"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
users: [{name: u, user: {token: t}}]
"""


def test_same_compares_secrets_too():
    assert pb.same(pb.mysql_block("user", "pw-one-1234"), pb.mysql_block("user", "pw-one-1234"))
    assert not pb.same(pb.mysql_block("user", "pw-one-1234"), pb.mysql_block("user", "pw-two-1234"))
    assert not pb.same(pb.target_block(KUBECONFIG, "127.0.0.2", None), pb.target_block(KUBECONFIG, "127.0.0.2", "127.0.0.1:3306"))


def test_target_block_is_the_upstream_example():
    t = pb.target_block(KUBECONFIG, "127.0.0.2", None)
    assert (t.namespace, t.cluster_name, t.node_address, t.vtgate_address) == ("example", "example", "127.0.0.2", None)


def test_ensure_saves_once_then_reports_no_change_and_delete_removes(prefect_server):
    pb.delete_all()
    assert pb.ensure(pb.target_block(KUBECONFIG, "127.0.0.2", None)) is True
    assert pb.ensure(pb.target_block(KUBECONFIG, "127.0.0.2", None)) is False
    assert pb.ensure(pb.target_block(KUBECONFIG, "127.0.0.2", "127.0.0.1:3306")) is True
    assert VitessTarget.load("sandbox").vtgate_address == "127.0.0.1:3306"
    assert pb.delete_all() == ["vtflow-vitess-target"]
    assert pb.load(VitessTarget) is None and pb.load(MySQLCredentials) is None


def test_unreachable_server_names_make_up():
    url = f"http://127.0.0.1:{free_port()}/api"
    with pytest.raises(UnreachableError) as e:
        pb.check_reachable(url, timeout=0.5)
    assert url in str(e.value) and "make up" in str(e.value)
