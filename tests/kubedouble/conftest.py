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

# the helpers module sits next to this file; tests import it by name
sys.path.insert(0, str(Path(__file__).parent))

from kubedouble_helpers import api_client_for  # noqa: E402

from vtflow.kubedouble import DoubleConfig, KubeDouble  # noqa: E402


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
    return dynamic.DynamicClient(api)


@pytest.fixture
def ns(api) -> str:
    """A new namespace for one test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name
