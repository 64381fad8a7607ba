"""The API double's command line, and the check for the double's extra."""

import sys
from pathlib import Path

from vtflow.sandbox import cluster


def spec(**kw):
    return cluster.ClusterSpec(port=6443, kubeconfig=Path("/s/kubeconfig"), mysql_backend="127.0.0.1:3307", **kw)


def test_command_passes_the_node_size_version_and_mysql_backend():
    argv = cluster.command(spec(node_cpu="2", node_memory="4Gi"))
    assert argv[:3] == [sys.executable, "-m", "kubedouble"]
    pairs = dict(zip(argv[3::2], argv[4::2]))
    assert pairs == {"--host": "127.0.0.1", "--port": "6443", "--kubeconfig": "/s/kubeconfig", "--nodes": "3",
                     "--node-cpu": "2", "--node-memory": "4Gi", "--version": cluster.K3S_VERSION,
                     "--mysql-backend": "127.0.0.1:3307", "--mysql-user": cluster.MYSQL_DBA_USER}


def test_the_double_accepts_every_option_the_sandbox_passes():
    from kubedouble.__main__ import parser

    args = parser().parse_args(cluster.command(spec())[3:])  # exits on an unknown option
    assert (args.mysql_backend, args.mysql_user, args.node_cpu) == ("127.0.0.1:3307", cluster.MYSQL_DBA_USER, "4")


def test_default_nodes_fit_the_101_cluster():
    assert (cluster.DEFAULT_NODE_CPU, cluster.DEFAULT_NODE_MEMORY) == ("4", "8Gi")
    assert (cluster.SMALL_NODE_CPU, cluster.SMALL_NODE_MEMORY) == ("2", "4Gi")


def test_missing_extra_is_named(monkeypatch):
    assert cluster.missing_extra() is None  # the test environment has the sandbox extra
    real = cluster.importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec",
                        lambda name, *a: None if name == "kubernetes_validate" else real(name, *a))
    assert cluster.missing_extra() == "kubernetes_validate"
