"""CRUD semantics through the typed client: codes, Status bodies, resourceVersion, dry run, GC."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubedouble_helpers import raw, wait_for


def _cm(name, data=None, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data or {"a": "1"})


def _status(e: ApiException) -> dict:
    return json.loads(e.body)


def test_create_get_list_with_server_metadata(core, ns):
    created = core.create_namespaced_config_map(ns, _cm("one"))
    assert created.metadata.uid and created.metadata.resource_version.isdigit()
    assert created.metadata.creation_timestamp is not None
    got = core.read_namespaced_config_map("one", ns)
    assert got.data == {"a": "1"}
    listing = core.list_namespaced_config_map(ns)
    assert [i.metadata.name for i in listing.items] == ["one"]
    assert int(listing.metadata.resource_version) >= int(created.metadata.resource_version)


def test_get_missing_is_404_with_status(core, ns):
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("nope", ns)
    assert e.value.status == 404
    st = _status(e.value)
    assert st["reason"] == "NotFound" and st["message"] == 'configmaps "nope" not found'
    assert st["details"] == {"name": "nope", "group": "", "kind": "configmaps"}


def test_create_twice_is_409_already_exists(core, ns):
    core.create_namespaced_config_map(ns, _cm("dup"))
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, _cm("dup"))
    assert e.value.status == 409
    assert _status(e.value)["reason"] == "AlreadyExists"


def test_replace_with_stale_resource_version_is_409_conflict(core, ns):
    first = core.create_namespaced_config_map(ns, _cm("rv"))
    first.data = {"a": "2"}
    core.replace_namespaced_config_map("rv", ns, first)
    first.data = {"a": "3"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("rv", ns, first)
    assert e.value.status == 409
    st = _status(e.value)
    assert st["reason"] == "Conflict"
    assert "the object has been modified" in st["message"]


def test_generation_moves_only_with_spec(apps, ns):
    dep = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="gen"),
        spec=client.V1DeploymentSpec(
            replicas=0, selector=client.V1LabelSelector(match_labels={"app": "gen"}),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={"app": "gen"}),
                                              spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="nginx:1")]))))
    created = apps.create_namespaced_deployment(ns, dep)
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("gen", ns, {"spec": {"replicas": 1}})
    assert scaled.metadata.generation == 2


def test_invalid_name_is_422(core, ns):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, _cm("Bad_Name"))
    assert e.value.status == 422
    st = _status(e.value)
    assert st["details"]["causes"][0]["field"] == "metadata.name"
    assert st["message"].startswith('ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name"')


def test_missing_name_is_422_required(core, ns):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta()))
    assert e.value.status == 422
    assert _status(e.value)["details"]["causes"][0]["reason"] == "FieldValueRequired"


def test_generate_name(core, ns):
    made = core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="gen-")))
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9


def test_builtin_schema_error_names_the_field(api, ns):
    # the typed client refuses a string replicas itself, so this goes through the raw transport
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
            "spec": {"replicas": "three", "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    with pytest.raises(ApiException) as e:
        raw(api, "POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body)
    # the typed decoder refuses it before validation: 400, in encoding/json's words
    assert e.value.status == 400
    st = _status(e.value)
    assert st["reason"] == "BadRequest"
    assert st["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal '
                             'string into Go struct field DeploymentSpec.spec.replicas of type int32')


def test_required_field_missing_is_422(api, ns):
    body = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "noimage"}, "spec": {"containers": [{"image": "x"}]}}
    with pytest.raises(ApiException) as e:
        raw(api, "POST", f"/api/v1/namespaces/{ns}/pods", body)
    assert e.value.status == 422
    assert _status(e.value)["details"]["causes"][0]["field"] == "spec.containers[0].name"


def test_create_in_missing_namespace_is_404(core):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("no-such-ns", _cm("x"))
    assert e.value.status == 404
    assert _status(e.value)["message"] == 'namespaces "no-such-ns" not found'


def test_dry_run_validates_but_stores_nothing(core, ns):
    made = core.create_namespaced_config_map(ns, _cm("dry"), dry_run="All")
    assert made.metadata.uid
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", ns)
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, _cm("Dry!"), dry_run="All")
    assert e.value.status == 422
    core.create_namespaced_config_map(ns, _cm("keep"))
    core.delete_namespaced_config_map("keep", ns, dry_run="All")
    assert core.read_namespaced_config_map("keep", ns)
    patched = core.patch_namespaced_config_map("keep", ns, {"data": {"a": "9"}}, dry_run="All")
    assert patched.data["a"] == "9"
    assert core.read_namespaced_config_map("keep", ns).data["a"] == "1"


def test_label_and_field_selectors(core, ns):
    core.create_namespaced_config_map(ns, _cm("a", labels={"tier": "db", "env": "prod"}))
    core.create_namespaced_config_map(ns, _cm("b", labels={"tier": "web", "env": "prod"}))
    core.create_namespaced_config_map(ns, _cm("c", labels={"tier": "web"}))

    def names(**kw):
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(ns, **kw).items)
    assert names(label_selector="tier=web") == ["b", "c"]
    assert names(label_selector="tier==web,env=prod") == ["b"]
    assert names(label_selector="tier!=web") == ["a"]
    assert names(label_selector="tier in (db,cache)") == ["a"]
    assert names(label_selector="tier notin (db)") == ["b", "c"]
    assert names(label_selector="env") == ["a", "b"]
    assert names(label_selector="!env") == ["c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.name!=b") == ["a", "c"]
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map(ns, field_selector="data.a=1")
    assert e.value.status == 400


def test_field_selector_on_secret_type(core, ns):
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="tls"), type="kubernetes.io/tls",
                                                      data={"tls.crt": "", "tls.key": ""}))
    core.create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="plain"), string_data={"a": "b"}))
    got = core.list_namespaced_secret(ns, field_selector="type=kubernetes.io/tls").items
    assert [s.metadata.name for s in got] == ["tls"]


def test_list_pagination(core, ns):
    for i in range(5):
        core.create_namespaced_config_map(ns, _cm(f"p{i}"))
    first = core.list_namespaced_config_map(ns, limit=2)
    assert len(first.items) == 2 and first.metadata._continue
    rest = core.list_namespaced_config_map(ns, limit=10, _continue=first.metadata._continue)
    assert [i.metadata.name for i in rest.items] == ["p2", "p3", "p4"]


def test_status_subresource_rules(apps, api, ns):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "st"},
           "spec": {"replicas": 0, "selector": {"matchLabels": {"a": "st"}},
                    "template": {"metadata": {"labels": {"a": "st"}}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}},
           "status": {"replicas": 42}}
    created = apps.create_namespaced_deployment(ns, dep)
    # a built-in kind answers with "status": {} from the start (the client reads it before any controller ran)
    assert created.status is not None and created.status.replicas is None
    patched = apps.patch_namespaced_deployment_status("st", ns, {"status": {"collisionCount": 7}, "spec": {"replicas": 5}})
    assert patched.status.collision_count == 7 and patched.spec.replicas == 0
    main = apps.patch_namespaced_deployment("st", ns, {"status": {"collisionCount": 1}})
    assert main.status.collision_count == 7


def test_delete_returns_status_and_then_404(core, ns):
    core.create_namespaced_config_map(ns, _cm("gone"))
    st = core.delete_namespaced_config_map("gone", ns)
    st = st if isinstance(st, dict) else st.to_dict()
    assert st["status"] == "Success" and st["details"]["name"] == "gone"
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_config_map("gone", ns)
    assert e.value.status == 404


def test_deleting_a_namespace_deletes_its_objects(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="doomed")))
    core.create_namespaced_config_map("doomed", _cm("inside"))
    answer = core.delete_namespace("doomed")
    answer = answer if isinstance(answer, dict) else answer.to_dict()
    assert answer["kind"] == "Namespace" and answer["status"]["phase"] == "Terminating"
    # the namespace controller removes the content, then the namespace (test_delete.py: the phases)

    def gone(read):
        try:
            read()
        except ApiException as e:
            return e.status == 404
        return False
    wait_for(lambda: gone(lambda: core.read_namespaced_config_map("inside", "doomed")), what="the content deleted")
    wait_for(lambda: gone(lambda: core.read_namespace("doomed")), what="the namespace deleted")


def test_owner_references_garbage_collection(core, ns):
    owner = core.create_namespaced_config_map(ns, _cm("owner"))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dep", owner_references=[ref])))
    orphan_owner = core.create_namespaced_config_map(ns, _cm("owner2"))
    ref2 = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner2", uid=orphan_owner.metadata.uid)
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dep2", owner_references=[ref2])))
    core.delete_namespaced_config_map("owner", ns, propagation_policy="Background")
    core.delete_namespaced_config_map("owner2", ns, propagation_policy="Orphan")

    def dep_gone():
        try:
            core.read_namespaced_config_map("dep", ns)
            return False
        except ApiException as e:
            return e.status == 404
    wait_for(dep_gone, what="dependent deleted")
    kept = core.read_namespaced_config_map("dep2", ns)
    assert not kept.metadata.owner_references


def test_cluster_scoped_crud(api):
    sched = client.SchedulingV1Api(api)
    pc = sched.create_priority_class(client.V1PriorityClass(metadata=client.V1ObjectMeta(name="kd-high"), value=1000))
    assert pc.value == 1000 and pc.metadata.namespace is None
    assert "kd-high" in [p.metadata.name for p in sched.list_priority_class().items]
    sched.delete_priority_class("kd-high")


# -- server-side Table output (kubectl get) ------------------------------------------------------
_TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,"
                 "application/json")


def _get_as(api, path: str, accept: str, query=None):
    params = api.param_serialize(method="GET", resource_path=path, query_params=query or [],
                                 header_params={"Accept": accept}, auth_settings=["BearerToken"])
    response = api.call_api(*params)
    response.read()
    return response.status, json.loads(response.data)


def test_list_as_table_has_the_printer_columns_and_partial_metadata(api, core, ns):
    """printers.go's ConfigMap printer (Name, Data, Age); a row's object defaults to
    PartialObjectMetadata (includeObject=Metadata), as asTable does."""
    core.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="t"), data={"a": "1", "b": "2"}))
    status, body = _get_as(api, f"/api/v1/namespaces/{ns}/configmaps", _TABLE_ACCEPT)
    assert status == 200 and body["kind"] == "Table" and body["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in body["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert body["metadata"]["resourceVersion"]
    (row,) = body["rows"]
    assert row["cells"][:2] == ["t", 2]
    assert row["object"]["kind"] == "PartialObjectMetadata" and row["object"]["metadata"]["name"] == "t"


def test_table_include_object_none_and_object(api, ns):
    _, none = _get_as(api, f"/api/v1/namespaces/{ns}/serviceaccounts", _TABLE_ACCEPT, [("includeObject", "None")])
    _, whole = _get_as(api, f"/api/v1/namespaces/{ns}/serviceaccounts", _TABLE_ACCEPT, [("includeObject", "Object")])
    status, bad = _get_as(api, f"/api/v1/namespaces/{ns}/serviceaccounts", _TABLE_ACCEPT, [("includeObject", "All")])
    assert all(r["object"] is None for r in none["rows"])
    assert all(r["object"]["kind"] == "ServiceAccount" for r in whole["rows"])
    assert status == 400 and bad["message"] == 'unrecognized includeObject value: "All"'


def test_pod_table_columns_and_default_table_for_other_kinds(api, ns):
    """Pod: printers.go podColumnDefinitions (wide ones at priority 1); a kind without a printer
    gets rest.DefaultTableConvertor's Name and Created At."""
    _, pods = _get_as(api, f"/api/v1/namespaces/{ns}/pods", _TABLE_ACCEPT)
    assert [(c["name"], c["priority"]) for c in pods["columnDefinitions"]] == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0),
        ("IP", 1), ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1)]
    _, roles = _get_as(api, f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", _TABLE_ACCEPT)
    assert [(c["name"], c["type"]) for c in roles["columnDefinitions"]] == [("Name", "string"), ("Created At", "date")]


def test_plain_json_accept_gets_the_plain_list_and_unknown_conversion_is_406(api, ns):
    status, body = _get_as(api, f"/api/v1/namespaces/{ns}/configmaps", "application/json")
    assert status == 200 and body["kind"] == "ConfigMapList"
    status, body = _get_as(api, f"/api/v1/namespaces/{ns}/configmaps", "application/json;as=Thing;v=v1;g=meta.k8s.io")
    assert status == 406


def test_a_dry_run_value_other_than_all_is_invalid_options(api, ns):
    # ValidateDryRun (apimachinery pkg/apis/meta/v1/validation): 422 on the verb's options kind
    with pytest.raises(ApiException) as e:
        raw(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "d"}}, query=[("dryRun", "Yes")])
    assert e.value.status == 422
    assert json.loads(e.value.body)["message"] == \
        'CreateOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: []string{"Yes"}: supported values: "All"'
