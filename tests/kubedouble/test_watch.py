"""Watches through kubernetes.watch.Watch: initial state, resume, timeouts, bookmarks, 410."""

import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from kubedouble_helpers import api_client_for


def _cm(name, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data={"a": "1"})


def test_watch_lists_then_streams_and_ends_at_timeout(core, ns):
    core.create_namespaced_config_map(ns, _cm("before"))

    def later():
        core.create_namespaced_config_map(ns, _cm("after"))
        core.patch_namespaced_config_map("after", ns, {"data": {"a": "2"}})
        core.delete_namespaced_config_map("after", ns)
    writer = threading.Thread(target=later)
    start = time.monotonic()
    events = []
    for e in watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=1):
        events.append((e["type"], e["object"].metadata.name))
        if len(events) == 1:  # the initial state has arrived, so the watch is open: what changes now is streamed
            writer.start()
    writer.join(timeout=5)
    assert time.monotonic() - start < 3
    assert events == [("ADDED", "before"), ("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "after")]


def test_watch_resumes_after_resource_version(core, ns):
    first = core.create_namespaced_config_map(ns, _cm("one"))
    core.create_namespaced_config_map(ns, _cm("two"))
    events = [e["object"].metadata.name for e in watch.Watch().stream(
        core.list_namespaced_config_map, ns, resource_version=first.metadata.resource_version, timeout_seconds=1)]
    assert events == ["two"]


def test_watch_label_selector_turns_leaving_into_deleted(core, ns):
    core.create_namespaced_config_map(ns, _cm("sel", labels={"pick": "yes"}))
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    core.patch_namespaced_config_map("sel", ns, {"metadata": {"labels": {"pick": "no"}}})
    events = [e["type"] for e in watch.Watch().stream(core.list_namespaced_config_map, ns, label_selector="pick=yes",
                                                      resource_version=rv, timeout_seconds=1)]
    assert events == ["DELETED"]


def test_watch_too_old_resource_version_is_410(fresh_double, tmp_path):
    d = fresh_double(history=5)
    core = client.CoreV1Api(api_client_for(d, tmp_path))
    first = core.create_namespaced_config_map("default", _cm("c0"))
    for i in range(1, 12):
        core.create_namespaced_config_map("default", _cm(f"c{i}"))
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(core.list_namespaced_config_map, "default",
                                  resource_version=first.metadata.resource_version, timeout_seconds=1))
    assert e.value.status == 410


def test_watch_bookmarks(fresh_double, tmp_path):
    d = fresh_double(bookmark_interval=0.2)
    core = client.CoreV1Api(api_client_for(d, tmp_path))
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    w = watch.Watch()
    types = [e["type"] for e in w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                         allow_watch_bookmarks=True, timeout_seconds=1)]
    assert "BOOKMARK" in types


def test_watch_field_selector_on_pods(core, ns):
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="w"),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1")]))
    core.create_namespaced_pod(ns, pod)
    seen = set()
    for e in watch.Watch().stream(core.list_namespaced_pod, ns, field_selector="status.phase=Running", timeout_seconds=2):
        seen.add(e["object"].status.phase)
        break
    assert seen == {"Running"}
