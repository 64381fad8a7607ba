"""Deletion as kube-apiserver + kube-controller-manager + kubelet do it, through the official client.

Each test names the real server's outcome it pins (sources: apiserver registry/generic/registry
store.go and registry/rest/delete.go, pkg/registry/core/pod/strategy.go, pkg/registry/core/
namespace/storage/storage.go, pkg/controller/garbagecollector, pkg/controller/namespace/deletion).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubedouble_helpers import api_client_for, raw, wait_for

HOLD = "example.com/hold"


def _cm(name: str, finalizers=None, labels=None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, finalizers=finalizers, labels=labels),
                              data={"k": "v"})


def _gone(read) -> bool:
    try:
        read()
    except ApiException as e:
        return e.status == 404
    return False


def _error(fn) -> tuple[int, dict]:
    with pytest.raises(ApiException) as ei:
        fn()
    return ei.value.status, json.loads(ei.value.body)


def _pod(name: str, node: str | None = "node-1", finalizers=None) -> dict:
    spec = {"containers": [{"name": "app", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "finalizers": finalizers}, "spec": spec}


def _deployment(name: str) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}


def _wait_deployment_pods(core, apps, ns, name):
    wait_for(lambda: len([p for p in core.list_namespaced_pod(ns, label_selector=f"app={name}").items
                          if p.status.phase == "Running"]) == 2, what="2 running pods")
    return apps.list_namespaced_replica_set(ns, label_selector=f"app={name}").items


# -- finalizers -------------------------------------------------------------------------------
def test_finalizer_keeps_the_object_marked_until_the_last_one_goes(api, core, ns):
    """Real: DELETE answers 200 with the object, deletionTimestamp set and
    deletionGracePeriodSeconds 0; it stays readable; a second DELETE changes nothing; an update
    that removes the last finalizer deletes it."""
    core.create_namespaced_config_map(ns, _cm("held", [HOLD]))
    out = raw(api, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/held")
    assert out["kind"] == "ConfigMap"
    assert out["metadata"]["deletionTimestamp"] and out["metadata"]["deletionGracePeriodSeconds"] == 0
    assert out["metadata"]["finalizers"] == [HOLD]
    again = raw(api, "DELETE", f"/api/v1/namespaces/{ns}/configmaps/held")
    assert again["metadata"]["resourceVersion"] == out["metadata"]["resourceVersion"]
    live = core.read_namespaced_config_map("held", ns)
    assert live.metadata.deletion_timestamp is not None and live.data == {"k": "v"}
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    assert _gone(lambda: core.read_namespaced_config_map("held", ns))


def test_no_new_finalizer_once_deleted_and_the_timestamp_stays(core, ns):
    """Real: 422 'metadata.finalizers: Forbidden: no new finalizers can be added if the object is
    being deleted, found new finalizers []string{"example.com/other"}'; an update cannot unset
    deletionTimestamp (rest.BeforeUpdate puts the old one back)."""
    core.create_namespaced_config_map(ns, _cm("held", [HOLD]))
    core.delete_namespaced_config_map("held", ns)
    code, body = _error(lambda: core.patch_namespaced_config_map(
        "held", ns, {"metadata": {"finalizers": [HOLD, "example.com/other"]}}))
    assert code == 422
    assert body["message"] == ('ConfigMap "held" is invalid: metadata.finalizers: Forbidden: no new finalizers can '
                               'be added if the object is being deleted, found new finalizers '
                               '[]string{"example.com/other"}')
    kept = core.patch_namespaced_config_map("held", ns, {"metadata": {"deletionTimestamp": None}})
    assert kept.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", ns, {"metadata": {"finalizers": None}})
    assert _gone(lambda: core.read_namespaced_config_map("held", ns))


def test_a_client_cannot_mark_a_live_object_deleted(core, ns):
    """Real: metadata.deletionTimestamp is immutable on update: 422 'field is immutable'."""
    core.create_namespaced_config_map(ns, _cm("live"))
    code, body = _error(lambda: core.patch_namespaced_config_map(
        "live", ns, {"metadata": {"deletionTimestamp": "2030-01-01T00:00:00Z"}}))
    assert code == 422 and "metadata.deletionTimestamp: Invalid value" in body["message"]
    assert body["message"].endswith("field is immutable")
    assert core.read_namespaced_config_map("live", ns).metadata.deletion_timestamp is None


# -- options ----------------------------------------------------------------------------------
def test_preconditions_and_dry_run(core, ns):
    """Real: a uid or resourceVersion precondition that does not match is 409 Conflict with
    rest.BeforeDelete's message; dryRun=All answers as a delete would and changes nothing."""
    cm = core.create_namespaced_config_map(ns, _cm("pre"))
    code, body = _error(lambda: core.delete_namespaced_config_map(
        "pre", ns, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="0000"))))
    assert code == 409 and body["reason"] == "Conflict"
    assert body["message"] == (f'Operation cannot be fulfilled on ConfigMap "pre": the UID in the precondition '
                               f'(0000) does not match the UID in record ({cm.metadata.uid}). The object might '
                               'have been deleted and then recreated')
    code, body = _error(lambda: core.delete_namespaced_config_map(
        "pre", ns, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version="1"))))
    assert code == 409 and "the ResourceVersion in the precondition (1) does not match" in body["message"]
    status = core.delete_namespaced_config_map("pre", ns, dry_run="All")
    assert status["status"] == "Success" and status["details"]["uid"] == cm.metadata.uid
    assert core.read_namespaced_config_map("pre", ns).metadata.resource_version == cm.metadata.resource_version
    core.delete_namespaced_config_map(
        "pre", ns, body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=cm.metadata.uid)))
    assert _gone(lambda: core.read_namespaced_config_map("pre", ns))


def test_unknown_propagation_policy_is_invalid(core, ns):
    """Real: ValidateDeleteOptions: 422 'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy:
    Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan", "nil"'."""
    core.create_namespaced_config_map(ns, _cm("p"))
    code, body = _error(lambda: core.delete_namespaced_config_map("p", ns, propagation_policy="Sideways"))
    assert code == 422
    assert body["message"] == ('DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: '
                               '"Sideways": supported values: "Foreground", "Background", "Orphan", "nil"')


def test_delete_collection_honours_finalizers(api, core, ns):
    """Real: deletecollection deletes each match as a DELETE would: held ones stay marked."""
    core.create_namespaced_config_map(ns, _cm("a", labels={"set": "x"}))
    core.create_namespaced_config_map(ns, _cm("b", [HOLD], labels={"set": "x"}))
    core.create_namespaced_config_map(ns, _cm("c", labels={"set": "y"}))
    core.delete_collection_namespaced_config_map(ns, label_selector="set=x")
    left = {c.metadata.name: c for c in core.list_namespaced_config_map(ns).items if c.metadata.name != "kube-root-ca.crt"}
    assert set(left) == {"b", "c"}
    assert left["b"].metadata.deletion_timestamp is not None and left["c"].metadata.deletion_timestamp is None


# -- pods -------------------------------------------------------------------------------------
def test_pod_graceful_deletion_then_the_kubelet_hands_it_back(api, core, ns):
    """Real: a scheduled pod's DELETE sets deletionTimestamp = now + terminationGracePeriodSeconds
    (30) and deletionGracePeriodSeconds 30; the kubelet stops the containers, writes a terminal
    phase and deletes it with grace 0 (a finalizer keeps it here to show that last state)."""
    core.create_namespaced_pod(ns, _pod("web", finalizers=[HOLD]))
    wait_for(lambda: core.read_namespaced_pod("web", ns).status.phase == "Running", what="Running")
    out = raw(api, "DELETE", f"/api/v1/namespaces/{ns}/pods/web")
    assert out["metadata"]["deletionGracePeriodSeconds"] == 30
    ts = datetime.strptime(out["metadata"]["deletionTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert 25 <= (ts - datetime.now(timezone.utc)).total_seconds() <= 31
    handed = wait_for(lambda: (p := core.read_namespaced_pod("web", ns)).metadata.deletion_grace_period_seconds == 0
                      and p, what="the kubelet's grace-0 delete")
    assert handed.status.phase == "Succeeded"
    assert handed.status.container_statuses[0].state.terminated.reason == "Completed"
    core.patch_namespaced_pod("web", ns, {"metadata": {"finalizers": None}})
    assert _gone(lambda: core.read_namespaced_pod("web", ns))


def test_unscheduled_pod_goes_at_once(core, ns):
    """Real: CheckGracefulDelete gives a pod without nodeName grace 0: removed by the DELETE."""
    pod = _pod("pending", node=None)
    pod["spec"]["nodeSelector"] = {"no-such-label": "x"}   # the scheduler cannot place it
    core.create_namespaced_pod(ns, pod)
    core.delete_namespaced_pod("pending", ns)
    assert _gone(lambda: core.read_namespaced_pod("pending", ns))


def test_terminating_pod_blocks_recreate_until_forced(fresh_double, tmp_path):
    """Real: while a pod terminates it is readable (phase Running, deletionTimestamp set) and its
    name is taken (409 AlreadyExists); a later DELETE may only shorten the grace period, and
    grace 0 (kubectl --force --grace-period=0) removes it at once."""
    d = fresh_double(nodes=1, pod_stop_delay=600)   # a kubelet that never gets there in this test
    core = client.CoreV1Api(api_client_for(d, tmp_path))
    core.create_namespaced_pod("default", _pod("slow"))
    wait_for(lambda: core.read_namespaced_pod("slow", "default").status.phase == "Running", what="Running")
    core.delete_namespaced_pod("slow", "default", grace_period_seconds=20)
    live = core.read_namespaced_pod("slow", "default")
    assert live.metadata.deletion_timestamp is not None and live.status.phase == "Running"
    assert live.metadata.deletion_grace_period_seconds == 20
    code, body = _error(lambda: core.create_namespaced_pod("default", _pod("slow")))
    assert code == 409 and body["reason"] == "AlreadyExists"
    core.delete_namespaced_pod("slow", "default", grace_period_seconds=60)   # longer: ignored
    assert core.read_namespaced_pod("slow", "default").metadata.deletion_grace_period_seconds == 20
    core.delete_namespaced_pod("slow", "default", grace_period_seconds=0)
    assert _gone(lambda: core.read_namespaced_pod("slow", "default"))


# -- cascades ---------------------------------------------------------------------------------
def test_background_cascade_deployment_replicaset_pods(core, apps, ns):
    """Real: default propagation for apps/v1 is Background: the Deployment goes at once, the
    garbage collector then deletes its ReplicaSet and the ReplicaSet's pods."""
    apps.create_namespaced_deployment(ns, _deployment("bg"))
    assert _wait_deployment_pods(core, apps, ns, "bg")
    apps.delete_namespaced_deployment("bg", ns)
    assert _gone(lambda: apps.read_namespaced_deployment("bg", ns))
    wait_for(lambda: not apps.list_namespaced_replica_set(ns).items and not core.list_namespaced_pod(ns).items,
             what="ReplicaSet and pods collected")


def test_foreground_cascade_keeps_the_owner_until_dependents_go(api, core, apps, ns):
    """Real: propagationPolicy Foreground answers with the owner carrying deletionTimestamp and the
    foregroundDeletion finalizer; dependents go first, then the owner."""
    apps.create_namespaced_deployment(ns, _deployment("fg"))
    assert _wait_deployment_pods(core, apps, ns, "fg")
    out = raw(api, "DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/fg",
              body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})
    assert out["kind"] == "Deployment" and out["metadata"]["finalizers"] == ["foregroundDeletion"]
    assert out["metadata"]["deletionTimestamp"]
    wait_for(lambda: _gone(lambda: apps.read_namespaced_deployment("fg", ns)), what="the deployment gone")
    assert not apps.list_namespaced_replica_set(ns).items
    assert not core.list_namespaced_pod(ns).items


def test_orphan_cascade_leaves_the_replicaset_without_owner(core, apps, ns):
    """Real: propagationPolicy Orphan: the owner gets the orphan finalizer, the collector removes
    the ownerReferences from its dependents, then the owner goes; the ReplicaSet stays."""
    apps.create_namespaced_deployment(ns, _deployment("or"))
    (rs,) = _wait_deployment_pods(core, apps, ns, "or")
    apps.delete_namespaced_deployment("or", ns, propagation_policy="Orphan")
    wait_for(lambda: _gone(lambda: apps.read_namespaced_deployment("or", ns)), what="the deployment gone")
    kept = apps.read_namespaced_replica_set(rs.metadata.name, ns)
    assert kept.metadata.owner_references is None and kept.metadata.deletion_timestamp is None
    assert len(core.list_namespaced_pod(ns).items) == 2


def test_batch_v1_job_orphans_its_pods_by_default(core, ns, api):
    """Real: pkg/registry/batch/job/strategy.go: batch/v1 Jobs default to OrphanDependents (for
    backwards compatibility): a DELETE without propagationPolicy leaves the pods, unowned."""
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(ns, client.V1Job(
        metadata=client.V1ObjectMeta(name="once"),
        spec=client.V1JobSpec(template=client.V1PodTemplateSpec(spec=client.V1PodSpec(
            restart_policy="Never", containers=[client.V1Container(name="c", image="busybox")])))))
    wait_for(lambda: core.list_namespaced_pod(ns).items, what="the job's pod")
    batch.delete_namespaced_job("once", ns)
    wait_for(lambda: _gone(lambda: batch.read_namespaced_job("once", ns)), what="the job gone")
    pods = core.list_namespaced_pod(ns).items
    assert len(pods) == 1 and pods[0].metadata.owner_references is None


def test_a_dependent_of_a_missing_owner_is_collected(core, ns):
    """Real: the collector deletes an object whose only owner does not exist (by uid)."""
    cm = core.create_namespaced_config_map(ns, _cm("owner"))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=cm.metadata.uid)
    core.delete_namespaced_config_map("owner", ns)
    core.create_namespaced_config_map(ns, client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="orphaned", owner_references=[ref])))
    wait_for(lambda: _gone(lambda: core.read_namespaced_config_map("orphaned", ns)), what="the dependent collected")


# -- namespaces -------------------------------------------------------------------------------
def test_namespace_terminates_waits_for_finalizers_then_goes(core):
    """Real: DELETE puts the namespace in phase Terminating (spec.finalizers ["kubernetes"]); new
    content is 403 'unable to create new content in namespace X because it is being terminated';
    a second DELETE is 409; the controller reports NamespaceFinalizersRemaining while content
    holds a finalizer, and the namespace goes once that is removed."""
    name = "t-term-" + datetime.now().strftime("%H%M%S%f")
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    core.create_namespaced_config_map(name, _cm("held", [HOLD]))
    ns = core.delete_namespace(name)   # the client hands the body back as a dict
    assert ns["status"]["phase"] == "Terminating" and ns["metadata"]["deletionTimestamp"]
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    code, body = _error(lambda: core.create_namespaced_config_map(name, _cm("late")))
    assert code == 403 and body["message"] == (f'configmaps "late" is forbidden: unable to create new content in '
                                               f'namespace {name} because it is being terminated')
    code, body = _error(lambda: core.delete_namespace(name))
    assert code == 409 and "The system is ensuring all content is removed from this namespace" in body["message"]

    def remaining():
        conds = {c.type: c for c in core.read_namespace(name).status.conditions or []}
        c = conds.get("NamespaceFinalizersRemaining")
        return c if c is not None and c.status == "True" else None
    cond = wait_for(remaining, what="NamespaceFinalizersRemaining")
    assert cond.reason == "SomeFinalizersRemain"
    assert cond.message == f"Some content in the namespace has finalizers remaining: {HOLD} in 1 resource instances"
    core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
    wait_for(lambda: _gone(lambda: core.read_namespace(name)), what="the namespace gone")
