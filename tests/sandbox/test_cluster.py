"""The API double's command line, with the options the installed double supports."""

import sys
from pathlib import Path

from vtflow.sandbox import cluster


def spec(**kw):
    return cluster.ClusterSpec(port=6443, kubeconfig=Path("/s/kubeconfig"), mysql_backend="127.0.0.1:3307", **kw)


def test_command_passes_the_node_size_and_version():
    argv = cluster.command(spec(node_cpu="2", node_memory="4Gi"), frozenset())
    assert argv[:3] == [sys.executable, "-m", "vtflow.kubedouble"]
    pairs = dict(zip(argv[3::2], argv[4::2]))
    assert pairs == {"--host": "127.0.0.1", "--port": "6443", "--kubeconfig": "/s/kubeconfig", "--nodes": "3",
                     "--node-cpu": "2", "--node-memory": "4Gi", "--version": cluster.K3S_VERSION}


def test_mysql_backend_is_passed_only_when_the_double_supports_it():
    assert "--mysql-backend" not in cluster.command(spec(), frozenset({"--nodes"}))
    argv = cluster.command(spec(), frozenset({"--mysql-backend"}))
    assert argv[argv.index("--mysql-backend") + 1] == "127.0.0.1:3307" and "--mysql-user" not in argv
    both = frozenset({"--mysql-backend", "--mysql-user"})
    argv = cluster.command(spec(), both)
    assert argv[argv.index("--mysql-user") + 1] == cluster.MYSQL_DBA_USER
    assert cluster.needs_dba_account(both) and not cluster.needs_dba_account(frozenset({"--mysql-backend"}))


def test_default_nodes_fit_the_101_cluster():
    assert (cluster.DEFAULT_NODE_CPU, cluster.DEFAULT_NODE_MEMORY) == ("4", "8Gi")
    assert (cluster.SMALL_NODE_CPU, cluster.SMALL_NODE_MEMORY) == ("2", "4Gi")


def test_double_options_reads_the_real_help():
    options = cluster.double_options()
    assert {"--port", "--kubeconfig", "--node-memory"} <= options
