"""Write validation through the official Python client: each test states what a real
kube-apiserver answers (sources: pkg/apis/core/validation/validation.go,
pkg/apis/apps/validation/validation.go, staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go,
test/integration/apiserver/field_validation_test.go, k8s.io/apiserver handlers/negotiation)."""

from __future__ import annotations

import base64
import json

import pytest
import yaml
from kubedouble_helpers import OPERATOR_DIR, wait_for
from kubernetes import client
from kubernetes.client.exceptions import ApiException

IMMUTABLE_SELECTOR = ('spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"b"}, '
                      "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable")


def call(api: client.ApiClient, method: str, path: str, body=None, query=None,
         content_type: str = "application/json"):
    """(status, headers, body) of one request through the client's own transport; errors too."""
    params = api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                 header_params={"Content-Type": content_type, "Accept": "application/json"},
                                 body=body, auth_settings=["BearerToken"])
    try:
        response = api.call_api(*params)
        response.read()
        return response.status, response.getheaders(), json.loads(response.data)
    except ApiException as e:
        return e.status, e.headers, json.loads(e.body)


@pytest.fixture(scope="module")
def vitess_crd(api):
    """The real VitessCluster CRD (vitess-operator v2.17.0), applied once."""
    path = OPERATOR_DIR / "crds" / "planetscale.com_vitessclusters.yaml"
    if not path.exists():
        pytest.skip(f"upstream file {path} is not present (set VTFLOW_UPSTREAM_DIR)")
    crd = yaml.safe_load(path.read_text())
    code, _, _ = call(api, "PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                      json.dumps(crd), query=[("fieldManager", "test"), ("force", "true")],
                      content_type="application/apply-patch+yaml")
    assert code in (200, 201)
    wait_for(lambda: call(api, "GET", "/apis/planetscale.com/v2")[0] == 200, what="VitessCluster served")


def vitess_cluster(name: str, **extra) -> dict:
    """The VitessCluster of the upstream example 101_initial_cluster.yaml, renamed."""
    docs = yaml.safe_load_all((OPERATOR_DIR / "examples" / "101_initial_cluster.yaml").read_text())
    vc = next(d for d in docs if d and d.get("kind") == "VitessCluster")
    vc["metadata"] = {"name": name}
    vc["spec"].update(extra)
    return vc


def deployment(name: str, container: dict | None = None, labels: dict | None = None, **spec) -> dict:
    labels = labels or {"app": "a"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [container or {"name": "c", "image": "nginx:1"}]}},
                     **spec}}


def deployments(ns: str) -> str:
    return f"/apis/apps/v1/namespaces/{ns}/deployments"


# -- 422 Invalid: the Go validation rules ---------------------------------------------------

def test_container_without_image_is_required_value(api, ns):
    code, _, st = call(api, "POST", deployments(ns), deployment("noimage", {"name": "c"}))
    assert code == 422 and st["reason"] == "Invalid"
    assert st["message"] == 'Deployment.apps "noimage" is invalid: spec.template.spec.containers[0].image: Required value'
    assert st["details"]["causes"] == [{"reason": "FieldValueRequired", "message": "Required value",
                                        "field": "spec.template.spec.containers[0].image"}]


def test_container_name_must_be_a_dns_label(api, ns):
    code, _, st = call(api, "POST", deployments(ns), deployment("badname", {"name": "Bad_Name", "image": "i"}))
    assert code == 422
    cause = st["details"]["causes"][0]
    assert cause["field"] == "spec.template.spec.containers[0].name"
    assert cause["message"].startswith('Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of')


def test_requests_above_limits_is_invalid(api, ns):
    c = {"name": "c", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}
    code, _, st = call(api, "POST", deployments(ns), deployment("greedy", c))
    assert code == 422
    assert st["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": "spec.template.spec.containers[0].resources.requests",
        "message": 'Invalid value: "2": must be less than or equal to cpu limit of 1'}]


def test_a_node_field_selector_takes_one_node_name(api, ns):
    # validateNodeFieldSelectorRequirement: several nodes are several terms, never several values
    many = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-1", "node-3"]}]}
    d = deployment("pinned")
    d["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [many]}}}
    code, _, st = call(api, "POST", deployments(ns), d)
    assert code == 422
    assert st["details"]["causes"] == [{
        "reason": "FieldValueRequired", "message": "Required value: must be only one value when `operator` is 'In' "
                                                   "or 'NotIn' for node field selector",
        "field": "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                 ".nodeSelectorTerms[0].matchFields[0].values"}]
    one_each = [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [n]}]} for n in ("node-1", "node-3")]
    d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = {
        "nodeSelectorTerms": one_each}
    code, _, _ = call(api, "POST", deployments(ns), d)
    assert code == 201


def test_selector_must_match_template_labels(api, ns):
    body = deployment("mismatch")
    body["spec"]["selector"]["matchLabels"] = {"app": "other"}
    code, _, st = call(api, "POST", deployments(ns), body)
    assert code == 422
    assert st["message"] == ('Deployment.apps "mismatch" is invalid: spec.template.metadata.labels: Invalid value: '
                             'map[string]string{"app":"a"}: `selector` does not match template `labels`')


def test_label_key_must_be_a_qualified_name(core, ns):
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, {"metadata": {"name": "lbl", "labels": {"bad key": "v"}}})
    assert e.value.status == 422
    cause = json.loads(e.value.body)["details"]["causes"][0]
    assert cause["field"] == "metadata.labels"
    assert cause["message"].startswith('Invalid value: "bad key": name part must consist of alphanumeric characters')


def test_deployment_selector_is_immutable(api, ns):
    assert call(api, "POST", deployments(ns), deployment("sel"))[0] == 201
    code, _, st = call(api, "PATCH", f"{deployments(ns)}/sel",
                       {"spec": {"selector": {"matchLabels": {"app": "b"}},
                                 "template": {"metadata": {"labels": {"app": "b"}}}}},
                       content_type="application/merge-patch+json")
    assert code == 422
    assert st["message"] == f'Deployment.apps "sel" is invalid: {IMMUTABLE_SELECTOR}'


def test_statefulset_fixed_fields_are_forbidden(api, ns):
    body = deployment("db")
    body["kind"], body["spec"]["serviceName"] = "StatefulSet", "db"
    path = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    assert call(api, "POST", path, body)[0] == 201
    code, _, st = call(api, "PATCH", f"{path}/db", {"spec": {"serviceName": "other", "replicas": 3}},
                       content_type="application/merge-patch+json")
    assert code == 422
    assert st["details"]["causes"] == [{
        "reason": "FieldValueForbidden", "field": "spec",
        "message": "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
                   "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and "
                   "'minReadySeconds' are forbidden"}]
    # the allowed fields still change
    code, _, sts = call(api, "PATCH", f"{path}/db", {"spec": {"replicas": 3}}, content_type="application/merge-patch+json")
    assert code == 200 and sts["spec"]["replicas"] == 3


def test_immutable_configmap_keeps_its_data(core, ns):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "frozen"}, "data": {"a": "1"}, "immutable": True})
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_config_map("frozen", ns, {"data": {"a": "2"}})
    assert e.value.status == 422
    assert json.loads(e.value.body)["message"] == \
        'ConfigMap "frozen" is invalid: data: Forbidden: field is immutable when `immutable` is set'


def test_service_cluster_ip_is_immutable(core, ns):
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_service("s", ns, {"spec": {"clusterIP": "10.43.200.200"}})
    assert e.value.status == 422
    assert json.loads(e.value.body)["details"]["causes"][0] == {
        "reason": "FieldValueInvalid", "field": "spec.clusterIP",
        "message": 'Invalid value: "10.43.200.200": field is immutable'}
    assert core.read_namespaced_service("s", ns).spec.cluster_ip == svc.spec.cluster_ip


def test_pvc_spec_is_immutable_but_for_bound_requests(core, ns):
    core.create_namespaced_persistent_volume_claim(ns, {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_persistent_volume_claim("data", ns, {"spec": {"accessModes": ["ReadWriteMany"]}})
    assert e.value.status == 422
    cause = json.loads(e.value.body)["details"]["causes"][0]
    assert cause["field"] == "spec" and cause["message"].startswith(
        "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName "
        "for bound claims")


# -- 400: what the typed decoder refuses ------------------------------------------------------

def test_unparsable_quantity_is_a_decode_error(api, ns):
    c = {"name": "c", "image": "i", "resources": {"limits": {"memory": "lots"}}}
    code, _, st = call(api, "POST", deployments(ns), deployment("lots", c))
    assert code == 400 and st["reason"] == "BadRequest"
    assert st["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: quantities must match '
                             "the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def test_quantities_are_stored_canonical(api, ns):
    c = {"name": "c", "image": "i", "resources": {"requests": {"cpu": 0.5, "memory": "1024Mi"},
                                                   "limits": {"cpu": "1000m", "memory": "1.5Gi"}}}
    code, _, obj = call(api, "POST", deployments(ns), deployment("canon", c))
    assert code == 201
    assert obj["spec"]["template"]["spec"]["containers"][0]["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1536Mi"}}


def test_unknown_field_warn_is_the_default_and_drops_it(api, ns):
    code, headers, obj = call(api, "POST", deployments(ns), deployment("warn", foo="bar"))
    assert code == 201 and "foo" not in obj["spec"]
    assert headers["Warning"] == '299 - "unknown field \\"spec.foo\\""'


def test_unknown_field_ignore_is_silent(api, ns):
    code, headers, obj = call(api, "POST", deployments(ns), deployment("ign", foo="bar"),
                              query=[("fieldValidation", "Ignore")])
    assert code == 201 and "foo" not in obj["spec"] and "Warning" not in headers


def test_unknown_and_duplicate_fields_strict_is_400(api, ns):
    text = json.dumps(deployment("strict", foo="bar"))
    text = text.replace('"spec": {', '"spec": {"replicas": 1, "replicas": 2, ', 1)
    # the client would re-encode a str body as a JSON string: send the bytes on its own connection pool
    cfg = api.configuration
    response = api.rest_client.pool_manager.request(
        "POST", f"{cfg.host}{deployments(ns)}?fieldValidation=Strict", body=text.encode(),
        headers={"Content-Type": "application/json", "Authorization": cfg.api_key["BearerToken"]})
    code, st = response.status, json.loads(response.data)
    assert code == 400
    assert st["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
                             'duplicate field "spec.replicas", unknown field "spec.foo"')


def test_unknown_field_in_a_custom_resource_strict_is_400(api, ns, vitess_crd):
    cr = vitess_cluster("vc", bogus=1)
    path = f"/apis/planetscale.com/v2/namespaces/{ns}/vitessclusters"
    code, _, st = call(api, "POST", path, cr, query=[("fieldValidation", "Strict")])
    assert code == 400
    assert st["message"] == ('VitessCluster in version "v2" cannot be handled as a VitessCluster: strict decoding '
                             'error: unknown field "spec.bogus"')
    code, headers, obj = call(api, "POST", path, cr)
    assert code == 201 and "bogus" not in obj["spec"]
    assert headers["Warning"] == '299 - "unknown field \\"spec.bogus\\""'


def test_bad_field_validation_value_is_422_create_options(api, ns):
    code, _, st = call(api, "POST", deployments(ns), deployment("opt"), query=[("fieldValidation", "Loud")])
    assert code == 422
    assert st["message"] == ('CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Loud": '
                             'supported values: "", "Ignore", "Strict", "Warn"')


# -- Secrets, content types ------------------------------------------------------------------

def test_secret_string_data_is_merged_into_data(core, ns):
    core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "data": {"a": base64.b64encode(b"old").decode(),
                                                                            "b": base64.b64encode(b"kept").decode()},
                                       "stringData": {"a": "new", "c": "plain"}})
    got = core.read_namespaced_secret("s", ns)
    assert got.string_data is None
    assert {k: base64.b64decode(v).decode() for k, v in got.data.items()} == {"a": "new", "b": "kept", "c": "plain"}


def test_yaml_body_is_accepted(api, ns):
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: v\n"
    code, _, obj = call(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", text, content_type="application/yaml")
    assert code == 201 and obj["data"] == {"k": "v"}


def test_protobuf_body_is_415_naming_kubectl_apply(api, ns):
    code, _, st = call(api, "POST", f"/api/v1/namespaces/{ns}/configmaps", "k8s\x00",
                       content_type="application/vnd.kubernetes.protobuf")
    assert code == 415 and st["reason"] == "UnsupportedMediaType"
    assert st["message"].startswith("the body of the request was in an unknown format - accepted media types "
                                    "include: application/json, application/yaml, application/vnd.kubernetes.protobuf")
    assert "kubectl apply -f" in st["message"]


def test_strategic_merge_patch_on_a_custom_resource_is_415(api, ns, vitess_crd):
    path = f"/apis/planetscale.com/v2/namespaces/{ns}/vitessclusters"
    assert call(api, "POST", path, vitess_cluster("smp"))[0] == 201
    code, _, st = call(api, "PATCH", f"{path}/smp", {"spec": {}}, content_type="application/strategic-merge-patch+json")
    assert code == 415
    assert st["message"] == ("the body of the request was in an unknown format - accepted media types include: "
                             "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")


def test_a_default_a_crd_gains_is_read_from_storage_and_owned_by_no_writer(api, ns):
    """apiextensions-apiserver defaults custom resources when it reads them from etcd, with the
    storage version's schema (Kubernetes docs, "Defaulting": "when reading from etcd using the
    storage version defaults ... not automatically written back"). So after a CRD gains a default
    (as vitess-operator v2.16's and v2.17's CRDs do inside spec.keyspaces), a GET shows it without a
    new resourceVersion, and a later merge patch of another field is that field's only change:
    its manager does not take the defaulted atomic list over."""
    import uuid

    group = f"t{uuid.uuid4().hex[:8]}.example.com"
    item = {"type": "object", "properties": {"name": {"type": "string"}, "optional": {"type": "boolean"}}}
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "size": {"type": "integer"}, "items": {"type": "array", "items": item}}}}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}]}}
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    assert call(api, "POST", crds, crd)[0] == 201
    try:
        path = f"/apis/{group}/v1/namespaces/{ns}/widgets"
        wait_for(lambda: call(api, "GET", path)[0] == 200, what="the Widget kind served")
        widget = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"},
                  "spec": {"size": 1, "items": [{"name": "a"}]}}
        code, _, made = call(api, "POST", path, widget, query=[("fieldManager", "deployer")])
        assert code == 201 and made["spec"]["items"] == [{"name": "a"}]

        code, _, now = call(api, "GET", f"{crds}/widgets.{group}")
        now["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["items"]["items"][
            "properties"]["optional"]["default"] = False
        assert call(api, "PUT", f"{crds}/widgets.{group}", now)[0] == 200
        code, _, read = call(api, "GET", f"{path}/w")
        assert read["spec"]["items"] == [{"name": "a", "optional": False}]
        assert read["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]

        code, _, patched = call(api, "PATCH", f"{path}/w", {"spec": {"size": 2}}, query=[("fieldManager", "upgrader")],
                                content_type="application/merge-patch+json")
        assert code == 200
        owned = {m["manager"]: m["fieldsV1"] for m in patched["metadata"]["managedFields"]}
        assert owned["upgrader"] == {"f:spec": {"f:size": {}}}
    finally:
        call(api, "DELETE", f"{crds}/widgets.{group}")
