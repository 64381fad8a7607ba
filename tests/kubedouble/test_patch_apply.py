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


# -- strategic merge patch with the real patch keys (apimachinery strategicpatch/patch.go) ------

def _web(ports=(80, 443), mounts=("/a", "/b")):
    body = _deploy("smk", replicas=0)
    pod = body["spec"]["template"]["spec"]
    pod["containers"][0].update(
        ports=[{"containerPort": p, "protocol": "TCP"} for p in ports],
        volumeMounts=[{"name": m.strip("/"), "mountPath": m} for m in mounts])
    pod["volumes"] = [{"name": m.strip("/"), "emptyDir": {}} for m in mounts]
    return body


def _smp(apps, ns, patch):
    return raw(apps.api_client, "PATCH", f"/apis/apps/v1/namespaces/{ns}/deployments/smk", patch,
               content_type="application/strategic-merge-patch+json")


def test_strategic_patch_deletes_one_container_port_by_containerPort(apps, ns):
    """The patch client-side `kubectl apply` sends when 443 leaves the manifest: the real server
    merges ports on containerPort, so 80 stays and no `$patch` literal is stored."""
    apps.create_namespaced_deployment(ns, _web())
    out = _smp(apps, ns, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "containers": [{"$setElementOrder/ports": [{"containerPort": 80}], "name": "web",
                        "ports": [{"$patch": "delete", "containerPort": 443}]}]}}}})
    assert out["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_strategic_patch_deletes_a_volume_mount_by_mountPath(apps, ns):
    """volumeMounts merge on mountPath and volumes on name: removing /b is a 200, /a stays."""
    apps.create_namespaced_deployment(ns, _web())
    out = _smp(apps, ns, {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}],
        "$setElementOrder/volumes": [{"name": "a"}],
        "containers": [{"$setElementOrder/volumeMounts": [{"mountPath": "/a"}], "name": "web",
                        "volumeMounts": [{"$patch": "delete", "mountPath": "/b"}]}],
        "volumes": [{"$patch": "delete", "name": "b"}]}}}})
    pod = out["spec"]["template"]["spec"]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "a", "mountPath": "/a"}]
    assert [v["name"] for v in pod["volumes"]] == ["a"]


def test_strategic_patch_adds_a_port_and_keeps_set_element_order(apps, ns):
    apps.create_namespaced_deployment(ns, _web(ports=(80,)))
    out = _smp(apps, ns, {"spec": {"template": {"spec": {"containers": [{
        "$setElementOrder/ports": [{"containerPort": 8080}, {"containerPort": 80}], "name": "web",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}}})
    assert [p["containerPort"] for p in out["spec"]["template"]["spec"]["containers"][0]["ports"]] == [8080, 80]


def test_strategic_patch_replaces_lists_without_a_merge_strategy(apps, ns):
    """args and tolerations have no patchStrategy: the patch's list replaces the live one."""
    body = _web()
    body["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
    body["spec"]["template"]["spec"]["tolerations"] = [{"key": "x", "operator": "Exists"}]
    apps.create_namespaced_deployment(ns, body)
    out = _smp(apps, ns, {"spec": {"template": {"spec": {
        "tolerations": [{"key": "y", "operator": "Exists"}],
        "containers": [{"name": "web", "args": ["c"]}]}}}})
    pod = out["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "y", "operator": "Exists"}]
    assert pod["containers"][0]["args"] == ["c"] and len(pod["containers"][0]["ports"]) == 2


def test_strategic_patch_merges_service_ports_on_port(core, ns):
    core.create_namespaced_service(ns, {"metadata": {"name": "s"}, "spec": {"selector": {"a": "b"}, "ports": [
        {"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})
    out = raw(core.api_client, "PATCH", f"/api/v1/namespaces/{ns}/services/s",
              {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"name": "https", "port": 443, "protocol": "TCP"}]}},
              content_type="application/strategic-merge-patch+json")
    assert [(p["port"], p["targetPort"]) for p in out["spec"]["ports"]] == [(80, 9090), (443, 443)]


def test_strategic_patch_directives_on_maps_and_primitive_lists(core, apps, ns):
    """$deleteFromPrimitiveList on finalizers (merge strategy), $retainKeys on the strategy
    (retainKeys), $patch: replace on a map."""
    body = _web()
    body["metadata"]["finalizers"] = ["example.com/a", "example.com/b"]
    body["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}
    apps.create_namespaced_deployment(ns, body)
    out = _smp(apps, ns, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/a"]},
                          "spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"},
                                   "selector": {"$patch": "replace", "matchLabels": {"app": "smk"}}}})
    assert out["metadata"]["finalizers"] == ["example.com/b"]
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    _smp(apps, ns, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/b"]}})


def test_strategic_patch_delete_item_without_merge_key_is_400(apps, ns):
    """mergepatch.ErrNoMergeKey: the real server answers 400 naming the key."""
    apps.create_namespaced_deployment(ns, _web())
    with pytest.raises(ApiException) as e:
        _smp(apps, ns, {"spec": {"template": {"spec": {"containers": [
            {"name": "web", "ports": [{"$patch": "delete", "name": "x"}]}]}}}})
    assert e.value.status == 400
    assert "does not contain declared merge key: containerPort" in json.loads(e.value.body)["message"]


# -- server-side apply keyed by the schema (structured-merge-diff) -------------------------------

def _svc(ports):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": f"p{p}", "port": p} for p in ports]}}


def test_apply_two_managers_own_different_service_ports(api, ns):
    """Service ports are a list-map keyed by port+protocol: 80 and 443 are different items,
    so the second manager's apply merges in with no conflict and each owns its own entry."""
    path = f"/api/v1/namespaces/{ns}/services/web"
    _apply(api, ns, _svc([80]), "one", path=path)
    out = _apply(api, ns, _svc([443]), "two", path=path)
    assert sorted(p["port"] for p in out["spec"]["ports"]) == [80, 443]
    owners = {m["manager"]: m["fieldsV1"]["f:spec"]["f:ports"] for m in out["metadata"]["managedFields"]}
    assert list(owners["one"]) == ['k:{"port":80,"protocol":"TCP"}']
    assert list(owners["two"]) == ['k:{"port":443,"protocol":"TCP"}']
    # "one" drops its port: only its own entry goes
    out = _apply(api, ns, {**_svc([]), "spec": {"selector": {"app": "web"}}}, "one", path=path)
    assert [p["port"] for p in out["spec"]["ports"]] == [443]


def test_apply_conflict_inside_a_list_map_entry(api, ns):
    path = f"/api/v1/namespaces/{ns}/services/web"
    _apply(api, ns, _svc([80]), "one", path=path)
    other = _svc([80])
    other["spec"]["ports"][0]["targetPort"] = 9090
    _apply(api, ns, other, "two", path=path)  # targetPort is new: nobody owned it
    other["spec"]["ports"][0]["name"] = "renamed"
    with pytest.raises(ApiException) as e:
        _apply(api, ns, other, "two", path=path)
    assert e.value.status == 409
    assert json.loads(e.value.body)["message"] == \
        'Apply failed with 1 conflict: conflict with "one": .spec.ports[port=80,protocol="TCP"].name'


def test_apply_merges_containers_and_env_by_name(api, ns):
    _apply(api, ns, _deploy("ke", replicas=0, env=[{"name": "A", "value": "1"}]), "one")
    two = _deploy("ke", replicas=0, env=[{"name": "B", "value": "2"}])
    del two["spec"]["replicas"]
    two["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox:1"})
    out = _apply(api, ns, two, "two")
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["web", "side"]
    assert [e["name"] for e in containers[0]["env"]] == ["A", "B"]
