"""Injected faults: error rates (500/429 with Retry-After), latency, dropped watches."""

import time

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubedouble import Faults

from kubedouble_helpers import api_client_for


def test_error_rate_answers_500_and_429_but_spares_discovery(fresh_double, tmp_path):
    d = fresh_double(faults=Faults(error_rate=1.0, error_codes=(500, 429), seed=7))
    api = api_client_for(d, tmp_path)
    core = client.CoreV1Api(api)
    codes = set()
    for i in range(12):
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=f"c{i}")))
        codes.add(e.value.status)
        if e.value.status == 429:
            assert e.value.headers["Retry-After"] == "1"
    assert codes == {500, 429}
    assert client.VersionApi(api).get_code().git_version  # discovery is excluded by default
    d.faults.error_rate = 0.0
    assert core.list_namespace().items


def test_latency(fresh_double, tmp_path):
    d = fresh_double(faults=Faults(latency_ms=150))
    core = client.CoreV1Api(api_client_for(d, tmp_path))
    start = time.monotonic()
    core.read_namespace("default")
    assert time.monotonic() - start >= 0.15


def test_watch_drop(fresh_double, tmp_path):
    d = fresh_double(faults=Faults(watch_drop_after_s=0.3))
    core = client.CoreV1Api(api_client_for(d, tmp_path))
    start = time.monotonic()
    with pytest.raises((urllib3.exceptions.ProtocolError, ApiException)):
        for _ in watch.Watch().stream(core.list_namespace, timeout_seconds=10):
            pass
    assert time.monotonic() - start < 5
