"""Fixtures for the kubedouble tests: doubles started in-process, clients built from kubeconfigs.

Tests talk to a double only through the official ``kubernetes`` client. They touch the
double's own API only to configure it (users, faults, exec handlers, log lines, hooks).
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client, dynamic

from vtflow.kube import discovery_client

# the helpers module sits next to this file; tests import it by name
sys.path.insert(0, str(Path(__file__).parent))

from kubedouble_helpers import api_client_for  # noqa: E402

from kubedouble import DoubleConfig, KubeDouble  # noqa: E402


@pytest.fixture(scope="session")
def double():
    d = KubeDouble(DoubleConfig(nodes=3, node_cpu="2", node_memory="4Gi", history=100000))
    d.start()
    yield d
    d.stop()


@pytest.fixture(scope="session")
def api(double, tmp_path_factory) -> client.ApiClient:
    return api_client_for(double, tmp_path_factory.mktemp("kube"))


@pytest.fixture
def fresh_double():
    """A double of its own, for tests that change faults, history or storage classes."""
    started = []

    def make(**kwargs) -> KubeDouble:
        faults = kwargs.pop("faults", None)
        d = KubeDouble(DoubleConfig(**kwargs), faults=faults)
        d.start()
        started.append(d)
        return d
    yield make
    for d in started:
        d.stop()


@pytest.fixture
def core(api) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture(scope="session")
def dyn(api) -> dynamic.DynamicClient:
    return discovery_client(api)


@pytest.fixture
def ns(api) -> str:
    """A new namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


# -- the Vitess simulation -----------------------------------------------------------------------
@pytest.fixture(scope="session")
def kd_mariadb(request):
    """A throwaway MariaDB that plays the tablets' mysqld and vtgate's backend.

    Shares the session's ``mariadb`` (tests/conftest.py) when there is one, else starts its own.
    """
    try:
        yield request.getfixturevalue("mariadb")
        return
    except pytest.FixtureLookupError:
        pass
    import tempfile
    try:
        from testbed import MariaDB, free_port
    except ImportError:  # the class may move to the sandbox package
        from vtflow.sandbox import MariaDB, free_port  # type: ignore[no-redef]
    db = MariaDB(root=Path(tempfile.mkdtemp(prefix="kd-mariadb-")), port=free_port()).start()
    yield db
    db.stop()


@pytest.fixture(scope="module")
def vitess_101(kd_mariadb, tmp_path_factory):
    """A double of 3 nodes x 8 CPU / 16Gi with the operators and a MariaDB backend, running the
    real operator.yaml and 101_initial_cluster.yaml (namespace "example") until ready."""
    from vitess_helpers import deploy_101, start_double
    d, api = start_double(tmp_path_factory.mktemp("vitess"), nodes=3, node_cpu="8", node_memory="16Gi",
                          operators=True, mysql_backend=f"{kd_mariadb.host}:{kd_mariadb.port}",
                          mysql_user=kd_mariadb.user, mysql_password=kd_mariadb.password)
    try:
        dyn = deploy_101(api)
        yield d, api, dyn
    finally:
        d.stop()
