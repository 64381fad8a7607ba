"""Watches through kubernetes.watch.Watch: initial state, resume, timeouts, bookmarks, 410."""

import json
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


def _deploy(name):
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=0, selector=client.V1LabelSelector(match_labels={"app": name}),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels={"app": name}),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox:1")]))))


def test_resumed_watch_replays_only_the_watched_kind(core, apps, ns):
    """A real server's watch cache is per resource: a Deployments watch resumed from an rv replays
    Deployment events only, each once, however many other kinds changed in between."""
    rv = apps.list_namespaced_deployment(ns).metadata.resource_version
    apps.create_namespaced_deployment(ns, _deploy("d1"))
    core.create_namespaced_service_account(ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="sa")))
    core.patch_namespaced_service_account("sa", ns, {"metadata": {"labels": {"x": "y"}}})
    core.create_namespaced_config_map(ns, _cm("cm"))
    apps.patch_namespaced_deployment("d1", ns, {"metadata": {"labels": {"x": "y"}}})
    apps.delete_namespaced_deployment("d1", ns)
    events = [(e["type"], e["object"].kind, e["object"].metadata.name) for e in watch.Watch().stream(
        apps.list_namespaced_deployment, ns, resource_version=rv, timeout_seconds=1)]
    kinds = {k for _, k, _ in events}
    assert kinds == {"Deployment"}
    assert [t for t, _, _ in events][:1] == ["ADDED"] and events[-1][0] == "DELETED"
    assert len([e for e in events if e[0] == "ADDED"]) == 1


def test_watch_list_sends_state_then_annotated_bookmark_then_changes(core, ns):
    """client-go's WatchListClient (kubectl wait, rollout status): sendInitialEvents=true with
    resourceVersionMatch=NotOlderThan gets the current objects as ADDED, one BOOKMARK annotated
    k8s.io/initial-events-end at the list's resourceVersion, then the changes."""
    core.create_namespaced_config_map(ns, _cm("old"))
    seen = []
    for e in watch.Watch().stream(core.list_namespaced_config_map, ns, send_initial_events=True,
                                  resource_version_match="NotOlderThan", allow_watch_bookmarks=True,
                                  timeout_seconds=1):
        meta = e["raw_object"]["metadata"]
        seen.append((e["type"], meta.get("name"), (meta.get("annotations") or {}).get("k8s.io/initial-events-end")))
        if e["type"] == "BOOKMARK" and len(seen) == 2:
            end_rv = meta["resourceVersion"]
            core.create_namespaced_config_map(ns, _cm("new"))
    assert seen[:3] == [("ADDED", "old", None), ("BOOKMARK", None, "true"), ("ADDED", "new", None)]
    assert int(end_rv) >= int(core.read_namespaced_config_map("old", ns).metadata.resource_version)


def test_watch_list_without_initial_events_starts_now(core, ns):
    """sendInitialEvents=false: no synthetic ADDED events for what already exists."""
    core.create_namespaced_config_map(ns, _cm("old"))
    events = list(watch.Watch().stream(core.list_namespaced_config_map, ns, send_initial_events=False,
                                       resource_version_match="NotOlderThan", timeout_seconds=1))
    assert events == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(send_initial_events=True), 'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: '
                                     "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
    (dict(resource_version_match="NotOlderThan", resource_version="1"),
     'ListOptions.meta.k8s.io "" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden '
     "for watch unless sendInitialEvents is provided"),
    (dict(send_initial_events=True, resource_version_match="Exact"),
     'ListOptions.meta.k8s.io "" is invalid: [resourceVersionMatch: Forbidden: sendInitialEvents requires setting '
     'resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported value: "Exact": supported values: '
     '"NotOlderThan"]'),
])
def test_watch_options_a_real_server_refuses_are_422(core, ns, kwargs, message):
    """apimachinery's ValidateListOptions for watch=true: NewInvalid(ListOptions.meta.k8s.io)."""
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(core.list_namespaced_config_map, ns, timeout_seconds=1, **kwargs))
    assert e.value.status == 422
    assert json.loads(e.value.body)["message"] == message


def test_list_with_send_initial_events_is_422(core, ns):
    """ValidateListOptions for a list: "sendInitialEvents is forbidden for list"."""
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, send_initial_events=True)
    assert e.value.status == 422
    assert json.loads(e.value.body)["message"] == ('ListOptions.meta.k8s.io "" is invalid: sendInitialEvents: '
                                                   "Forbidden: sendInitialEvents is forbidden for list")


def test_watch_from_a_future_resource_version_fails_with_504(core, ns):
    """The cacher waits for a version it has not reached, then ends the watch with
    "Too large resource version" (504 Timeout)."""
    rv = int(core.list_namespaced_config_map(ns).metadata.resource_version)
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=str(rv + 1000),
                                  timeout_seconds=1))
    assert e.value.status == 504
