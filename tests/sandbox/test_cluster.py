"""The API double's command line, the sandbox's versions and node sizes, and the check for the double's extra."""

import sys
from pathlib import Path

import pytest

from vtflow.errors import ConfigError
from vtflow.sandbox import cluster


def spec(**kw):
    return cluster.ClusterSpec(port=6443, kubeconfig=Path("/s/kubeconfig"), mysql_backend="127.0.0.1:3307", **kw)


def test_command_passes_the_node_sizes_version_network_and_mysql_backend():
    argv = cluster.command(spec(node_sizes=(("2", "4Gi"), ("1", "2Gi"), ("2", "4Gi")), k3s_version="v1.24.6+k3s1",
                                network="127.9.8"))
    assert argv[:3] == [sys.executable, "-m", "kubedouble"]
    pairs = dict(zip(argv[3::2], argv[4::2]))
    # the nodes' addresses are the sshd nodes' (127.9.8.2-4), and NodePorts answer on the first
    assert pairs == {"--host": "127.0.0.1", "--port": "6443", "--kubeconfig": "/s/kubeconfig",
                     "--node-sizes": "2/4Gi,1/2Gi,2/4Gi", "--version": "v1.24.6+k3s1",
                     "--node-network": "127.9.8", "--vtgate-host": "127.9.8.2",
                     "--mysql-backend": "127.0.0.1:3307", "--mysql-user": cluster.MYSQL_DBA_USER}


def test_the_double_accepts_every_option_the_sandbox_passes():
    from kubedouble.__main__ import parser

    args = parser().parse_args(cluster.command(spec())[3:])  # exits on an unknown option
    assert (args.mysql_backend, args.mysql_user) == ("127.0.0.1:3307", cluster.MYSQL_DBA_USER)
    assert args.node_sizes == [("4", "8Gi")] * 3 and args.version == cluster.K3S_VERSION
    schemas = parser().parse_args(cluster.schemas_command("v1.24.6+k3s1")[3:])
    assert schemas.install_schemas and schemas.version == "v1.24.6+k3s1"


def test_default_nodes_fit_the_101_cluster():
    assert (cluster.DEFAULT_NODE_CPU, cluster.DEFAULT_NODE_MEMORY) == ("4", "8Gi")
    assert (cluster.SMALL_NODE_CPU, cluster.SMALL_NODE_MEMORY) == ("2", "4Gi")


def test_each_minor_plays_a_k3s_release_of_that_minor():
    assert cluster.k3s_release("1.24") == cluster.k3s_release("v1.24.6+k3s1") == "v1.24.6+k3s1"
    assert list(cluster.K3S_RELEASES) == [f"1.{m}" for m in range(24, 36)]
    for minor, release in cluster.K3S_RELEASES.items():
        assert release.startswith(f"v{minor}.") and "+k3s" in release
    assert cluster.K3S_VERSION == cluster.K3S_RELEASES[cluster.DEFAULT_KUBERNETES]
    with pytest.raises(ConfigError, match=r"'1\.23'.*pick one of 1\.24, 1\.25"):
        cluster.k3s_release("1.23")


def test_node_sizes_parse_one_cpu_and_memory_per_node():
    assert cluster.parse_node_sizes("2/4Gi,1/2Gi, 2/4Gi") == [("2", "4Gi"), ("1", "2Gi"), ("2", "4Gi")]
    for bad in ("2/4Gi,1", "2/4Gi,0/2Gi", "2/four"):
        with pytest.raises(ConfigError, match="is not CPU/MEMORY.*2/4Gi,1/2Gi,2/4Gi"):
            cluster.parse_node_sizes(bad)


def test_missing_extra_is_named(monkeypatch):
    assert cluster.missing_extra() is None  # the test environment has the sandbox extra
    real = cluster.importlib.util.find_spec
    monkeypatch.setattr(cluster.importlib.util, "find_spec",
                        lambda name, *a: None if name == "kubernetes_validate" else real(name, *a))
    assert cluster.missing_extra() == "kubernetes_validate"
