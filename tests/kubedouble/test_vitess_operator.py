"""The real vitess-operator v2.17.0 manifests against the double (server-side apply, CRD schemas)."""

import copy

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from vtflow.kube import discovery_client

from kubedouble_helpers import OPERATOR_DIR, wait_for

KINDS = ["EtcdLockserver", "VitessBackup", "VitessBackupSchedule", "VitessBackupStorage", "VitessCell",
         "VitessCluster", "VitessKeyspace", "VitessShard"]


def _docs(name):
    path = OPERATOR_DIR / "examples" / name
    if not path.exists():
        pytest.skip(f"upstream file {path} is not present (set VTFLOW_UPSTREAM_DIR)")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _apply(dyn, doc, namespace):
    rc = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    if rc.namespaced:
        doc = copy.deepcopy(doc)
        doc["metadata"]["namespace"] = namespace
        return rc.server_side_apply(body=doc, namespace=namespace, field_manager="vtflow", force_conflicts=True)
    return rc.server_side_apply(body=doc, field_manager="vtflow", force_conflicts=True)


@pytest.fixture(scope="module")
def operator(api, dyn):
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="example")))
    for doc in _docs("operator.yaml"):
        _apply(dyn, doc, "example")
    dyn.resources.invalidate_cache()
    return "example"


def test_operator_registers_all_eight_kinds(operator, dyn):
    for kind in KINDS:
        rc = dyn.resources.get(api_version="planetscale.com/v2", kind=kind)
        assert rc.namespaced


def test_crds_become_established(operator, api):
    ext = client.ApiextensionsV1Api(api)

    def established():
        crd = ext.read_custom_resource_definition("vitessclusters.planetscale.com")
        conds = {c.type: c.status for c in (crd.status.conditions or [])}
        return conds.get("Established") == "True" and conds.get("NamesAccepted") == "True" and crd
    crd = wait_for(established, what="CRD Established")
    assert crd.status.accepted_names.kind == "VitessCluster"


def test_operator_deployment_becomes_available(operator, api):
    apps = client.AppsV1Api(api)
    name = next(d["metadata"]["name"] for d in _docs("operator.yaml") if d["kind"] == "Deployment")
    wait_for(lambda: (apps.read_namespaced_deployment(name, "example").status.available_replicas or 0) >= 1,
             what="operator deployment available")


def test_101_cluster_validates_against_the_crd(operator, dyn):
    docs = _docs("101_initial_cluster.yaml")
    secret = next(d for d in docs if d["kind"] == "Secret")
    cluster = next(d for d in docs if d["kind"] == "VitessCluster")
    _apply(dyn, secret, "example")
    applied = _apply(dyn, cluster, "example")
    assert applied.metadata.name == "example"
    got = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster").get(name="example", namespace="example")
    assert got.spec.cells[0].name == "zone1"
    assert got.metadata.generation == 1


def test_wrong_type_in_vitesscluster_is_422_with_field_path(operator, dyn):
    cluster = copy.deepcopy(next(d for d in _docs("101_initial_cluster.yaml") if d["kind"] == "VitessCluster"))
    cluster["metadata"]["name"] = "broken"
    cluster["spec"]["cells"][0]["gateway"]["replicas"] = "two"
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    with pytest.raises(ApiException) as e:
        rc.server_side_apply(body=cluster, namespace="example", field_manager="vtflow")
    assert e.value.status == 422
    body = yaml.safe_load(e.value.body)
    assert body["reason"] == "Invalid"
    assert body["details"]["kind"] == "VitessCluster" and body["details"]["group"] == "planetscale.com"
    assert body["message"] == (
        'VitessCluster.planetscale.com "broken" is invalid: spec.cells[0].gateway.replicas: Invalid value: '
        '"string": spec.cells[0].gateway.replicas in body must be of type integer: "string"')
    assert body["details"]["causes"][0]["field"] == "spec.cells[0].gateway.replicas"


def test_object_where_crd_wants_a_list_is_422(operator, dyn):
    cluster = copy.deepcopy(next(d for d in _docs("101_initial_cluster.yaml") if d["kind"] == "VitessCluster"))
    cluster["metadata"]["name"] = "broken2"
    cluster["spec"]["keyspaces"] = {"name": "commerce"}
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    with pytest.raises(ApiException) as e:
        rc.create(body=cluster, namespace="example")
    assert e.value.status == 422
    assert "spec.keyspaces: Invalid value" in yaml.safe_load(e.value.body)["message"]


def test_unknown_fields_are_pruned(operator, dyn):
    cluster = copy.deepcopy(next(d for d in _docs("101_initial_cluster.yaml") if d["kind"] == "VitessCluster"))
    cluster["metadata"]["name"] = "pruned"
    cluster["spec"]["notAField"] = {"x": 1}
    rc = dyn.resources.get(api_version="planetscale.com/v2", kind="VitessCluster")
    created = rc.create(body=cluster, namespace="example")
    assert "notAField" not in created.spec.to_dict()


# -- the operator's container contract: the redeploy patch (issue 12) ------------------------------
NEW_IMAGE = "planetscale/vitess-operator:v2.17.1"


@pytest.fixture
def running_operator(tmp_path):
    from vitess_helpers import start_double
    d, api = start_double(tmp_path, operators=True, crash_interval=0.05)
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="example")))
    dyn = discovery_client(api)
    for doc in _docs("operator.yaml"):   # the pod's contract needs no CRDs (and they are slow to apply)
        if doc["kind"] in ("PriorityClass", "ServiceAccount", "Deployment"):
            _apply(dyn, doc, "example")
    apps = client.AppsV1Api(api)
    wait_for(lambda: (apps.read_namespaced_deployment("vitess-operator", "example").status.available_replicas or 0) >= 1,
             what="operator available")
    yield api
    d.stop()


def _new_replicaset(apps, image):
    rss = apps.list_namespaced_replica_set("example", label_selector="app=vitess-operator").items
    return next((r for r in rss if r.spec.template.spec.containers[0].image == image), None)


def _pod_of(core, rs):
    pods = core.list_namespaced_pod("example", label_selector=f"pod-template-hash={rs.metadata.labels['pod-template-hash']}")
    return pods.items[0] if pods.items else None


def test_the_old_merge_patch_redeploy_makes_the_new_operator_crash_loop(running_operator):
    """A real cluster: the JSON merge patch replaces the containers list, so the new container has
    no env; the operator exits 1 with "WATCH_NAMESPACE must be set" (operator-sdk-libs k8sutil) and
    the kubelet restarts it into CrashLoopBackOff; the new ReplicaSet never becomes available."""
    api = running_operator
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.patch_namespaced_deployment("vitess-operator", "example", {"spec": {"template": {"spec": {
        "containers": [{"name": "vitess-operator", "image": NEW_IMAGE}]}}}}, _content_type="application/merge-patch+json")
    rs = wait_for(lambda: _new_replicaset(apps, NEW_IMAGE), what="new ReplicaSet")
    assert rs.spec.template.spec.containers[0].env is None     # the merge patch dropped it

    def crash_looping(min_restarts):
        p = _pod_of(core, rs)
        cs = p and p.status.container_statuses and p.status.container_statuses[0]
        return cs and cs.state.waiting and cs.state.waiting.reason == "CrashLoopBackOff" and \
            cs.restart_count >= min_restarts and (p, cs)
    pod, cs = wait_for(lambda: crash_looping(1), what="CrashLoopBackOff")
    assert cs.last_state.terminated.exit_code == 1 and cs.last_state.terminated.reason == "Error"
    assert not cs.ready and {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"
    assert cs.state.waiting.message.startswith("back-off 10s restarting failed container=vitess-operator pod=")
    wait_for(lambda: crash_looping(cs.restart_count + 1), what="restartCount rising")
    log = core.read_namespaced_pod_log(pod.metadata.name, "example", previous=True)
    assert '"msg":"Failed to get watch namespace","error":"WATCH_NAMESPACE must be set"' in log
    assert not apps.read_namespaced_replica_set(rs.metadata.name, "example").status.available_replicas


def test_a_strategic_merge_patch_of_the_image_rolls_out_and_stays_available(running_operator):
    """A real cluster: the strategic merge patch merges the container by name, keeping command and env."""
    api = running_operator
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.patch_namespaced_deployment("vitess-operator", "example", {"spec": {"template": {"spec": {
        "containers": [{"name": "vitess-operator", "image": NEW_IMAGE}]}}}},
        _content_type="application/strategic-merge-patch+json")
    rs = wait_for(lambda: _new_replicaset(apps, NEW_IMAGE), what="new ReplicaSet")
    wait_for(lambda: (apps.read_namespaced_replica_set(rs.metadata.name, "example").status.available_replicas or 0) == 1,
             what="new ReplicaSet available")
    pod = _pod_of(core, rs)
    cs = pod.status.container_statuses[0]
    assert cs.restart_count == 0 and cs.ready and cs.state.running
    assert '"msg":"Starting the manager."' in core.read_namespaced_pod_log(pod.metadata.name, "example")
    dep = apps.read_namespaced_deployment("vitess-operator", "example")
    assert dep.status.updated_replicas == 1 and dep.status.available_replicas == 1
