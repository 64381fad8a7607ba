"""Patches (merge, JSON, strategic) and server-side apply with managedFields and conflicts."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubedouble_helpers import raw


def _deploy(name, replicas=1, image="nginx:1.25", env=None):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "web", "image": image, "env": env or []}]}}}}


def _apply(api, ns, body, manager, force=False, path=None):
    path = path or f"/apis/apps/v1/namespaces/{ns}/deployments/{body['metadata']['name']}"
    query = [("fieldManager", manager)] + ([("force", "true")] if force else [])
    return raw(api, "PATCH", path, body, query, "application/apply-patch+yaml")


def test_merge_patch_deletes_with_null(core, ns):
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="m"), data={"a": "1", "b": "2"}))
    out = raw(core.api_client, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/m", {"data": {"a": None, "c": "3"}},
              content_type="application/merge-patch+json")
    assert out["data"] == {"b": "2", "c": "3"}


def test_json_patch_and_failed_test_op(core, ns):
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="j"), data={"a": "1"}))
    ops = [{"op": "test", "path": "/data/a", "value": "1"}, {"op": "add", "path": "/data/b", "value": "2"},
           {"op": "remove", "path": "/data/a"}]
    out = core.patch_namespaced_config_map("j", ns, ops)
    assert out.data == {"b": "2"}
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("j", ns, [{"op": "test", "path": "/data/b", "value": "nope"}])
    assert e.value.status == 422


def test_strategic_merge_merges_containers_by_name(apps, ns):
    body = _deploy("smp", replicas=0)
    body["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox:1"})
    apps.create_namespaced_deployment(ns, body)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}}
    out = apps.patch_namespaced_deployment("smp", ns, patch)
    images = {c.name: c.image for c in out.spec.template.spec.containers}
    assert images == {"web": "nginx:1.27", "side": "busybox:1"}


def test_patch_missing_object_is_404(core, ns):
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("absent", ns, {"data": {"a": "1"}})
    assert e.value.status == 404


def test_apply_creates_and_records_managed_fields(api, ns):
    out = _apply(api, ns, _deploy("ssa", replicas=0), "vtflow")
    assert out["metadata"]["generation"] == 1
    mf = {m["manager"]: m for m in out["metadata"]["managedFields"]}
    assert mf["vtflow"]["operation"] == "Apply"
    fields = mf["vtflow"]["fieldsV1"]
    assert "f:replicas" in fields["f:spec"]
    assert 'k:{"name":"web"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]


def test_apply_requires_field_manager(api, ns):
    with pytest.raises(ApiException) as e:
        raw(api, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/x", _deploy("x"), [],
            "application/apply-patch+yaml")
    assert e.value.status == 422


def test_apply_conflict_then_force(api, ns):
    _apply(api, ns, _deploy("own", replicas=0), "first")
    with pytest.raises(ApiException) as e:
        _apply(api, ns, _deploy("own", replicas=2), "second")
    assert e.value.status == 409
    st = json.loads(e.value.body)
    assert st["reason"] == "Conflict"
    assert st["message"] == 'Apply failed with 1 conflict: conflict with "first": .spec.replicas'
    assert st["details"]["causes"][0]["field"] == ".spec.replicas"
    # the same value is not a conflict: both managers then share the field
    _apply(api, ns, _deploy("own", replicas=0), "second")
    _apply(api, ns, _deploy("own", replicas=0), "first")
    out = _apply(api, ns, _deploy("own", replicas=3), "second", force=True)
    assert out["spec"]["replicas"] == 3
    owners = {m["manager"]: m["fieldsV1"] for m in out["metadata"]["managedFields"]}
    assert "f:replicas" not in owners["first"].get("f:spec", {})


def test_apply_conflicts_with_an_update_manager(api, apps, ns):
    _apply(api, ns, _deploy("upd", replicas=0), "applier")
    apps.patch_namespaced_deployment("upd", ns, {"spec": {"replicas": 1}}, field_manager="scaler")
    with pytest.raises(ApiException) as e:
        _apply(api, ns, _deploy("upd", replicas=0), "applier")
    assert e.value.status == 409 and '"scaler"' in json.loads(e.value.body)["message"]


def test_apply_removes_fields_the_manager_dropped(api, ns):
    body = _deploy("drop", replicas=0)
    body["metadata"]["labels"] = {"keep": "1", "drop": "1"}
    _apply(api, ns, body, "vtflow")
    body["metadata"]["labels"] = {"keep": "1"}
    out = _apply(api, ns, body, "vtflow")
    assert out["metadata"]["labels"] == {"keep": "1"}


def test_apply_merges_named_lists(api, ns):
    _apply(api, ns, _deploy("env", replicas=0, env=[{"name": "A", "value": "1"}]), "one")
    other = _deploy("env", replicas=0, env=[{"name": "B", "value": "2"}])
    del other["spec"]["replicas"]
    out = _apply(api, ns, other, "two")
    env = {e["name"]: e["value"] for e in out["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {"A": "1", "B": "2"}


def test_dynamic_client_server_side_apply(dyn, ns):
    cms = dyn.resources.get(api_version="v1", kind="ConfigMap")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dyn", "namespace": ns}, "data": {"k": "v"}}
    out = cms.server_side_apply(body=body, namespace=ns, field_manager="vtflow")
    assert out.data.k == "v"
    body["data"] = {"k": "w"}
    out = cms.server_side_apply(body=body, namespace=ns, field_manager="vtflow", force_conflicts=True)
    assert out.data.k == "w"


def test_apply_dry_run_stores_nothing(api, core, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry-apply"}, "data": {"a": "1"}}
    raw(api, "PATCH", f"/api/v1/namespaces/{ns}/configmaps/dry-apply", body,
        [("fieldManager", "x"), ("dryRun", "All")], "application/apply-patch+yaml")
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("dry-apply", ns)
    assert e.value.status == 404
