"""The OpenAPI documents (kube-openapi's handler and handler3 behaviour) served from the schemas
the double validates with: index with hashes, group-version documents, v2 JSON, caching."""

import json
import uuid

from kubernetes import client

from kubedouble.protowire import fields

from kubedouble_helpers import wait_for


def _get(api: client.ApiClient, path: str, headers: dict | None = None):
    """A GET through the official client's transport; returns the raw urllib3 response."""
    params = api.param_serialize(method="GET", resource_path=path, header_params=headers or {},
                                 auth_settings=["BearerToken"])
    response = api.call_api(*params)
    response.read()
    return response


def _doc(api, path, headers=None) -> dict:
    r = _get(api, path, headers)
    assert r.status == 200, r.data
    return json.loads(r.data)


def test_index_lists_group_versions_with_hashes(api):
    paths = _doc(api, "/openapi/v3")["paths"]
    assert paths["api/v1"]["serverRelativeURL"].startswith("/openapi/v3/api/v1?hash=")
    url = paths["apis/apps/v1"]["serverRelativeURL"]
    doc = _doc(api, url)
    deploy = doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"]
    assert deploy["x-kubernetes-group-version-kind"] == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    ports = doc["components"]["schemas"]["io.k8s.api.core.v1.Container"]["properties"]["ports"]
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort" and ports["type"] == "array"


def test_patch_operations_list_field_validation(api):
    """kubectl's QueryParamVerifierV3 looks for a PATCH operation with the kind's GVK extension
    and a `fieldValidation` query parameter before it sends fieldValidation=Strict."""
    doc = _doc(api, "/openapi/v3/apis/apps/v1")
    op = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert op["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}
    assert {"fieldValidation", "fieldManager", "dryRun", "force"} <= {p["name"] for p in op["parameters"] if p["in"] == "query"}


def test_stale_hash_redirects_and_etag_revalidates(api):
    r = _get(api, "/openapi/v3/api/v1?hash=0000", {"Accept": "application/json"})
    # urllib3 follows the 301 to the current hash, as client-go does
    assert r.status == 200
    url = _doc(api, "/openapi/v3")["paths"]["api/v1"]["serverRelativeURL"]
    r = _get(api, url)
    etag = r.headers["Etag"]
    assert etag == '"' + url.split("hash=")[1] + '"'
    assert r.headers["Cache-Control"] == "public, immutable"
    assert _get(api, url, {"If-None-Match": etag}).status == 304


def test_v2_is_served_as_the_first_accepted_of_protobuf_and_json(api):
    # kube-openapi's handler: the first Accept clause it can meet wins; protobuf comes back as
    # "...spec.v2.v1.0+protobuf" (Go's mime parser refuses the "@" of the requested type)
    pb = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
    r = _get(api, "/openapi/v2", {"Accept": pb})
    assert r.status == 200 and r.headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    document = dict(fields(r.data))
    assert document[1] == b"2.0"
    names = {dict(fields(named))[1].decode() for _, named in fields(document[9])}
    assert "io.k8s.api.apps.v1.Deployment" in names and "io.k8s.api.core.v1.ConfigMap" in names
    doc = _doc(api, "/openapi/v2", {"Accept": "application/json, " + pb})
    assert doc["swagger"] == "2.0" and "io.k8s.api.apps.v1.Deployment" in doc["definitions"]
    assert _get(api, "/openapi/v2", {"Accept": "application/yaml"}).status == 406


def test_a_crd_gets_a_document_and_a_new_hash_when_it_changes(api):
    group = f"t{uuid.uuid4().hex[:6]}.example.com"
    ext = client.ApiextensionsV1Api(api)
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": schema}}]}}
    ext.create_custom_resource_definition(crd)
    url = wait_for(lambda: _doc(api, "/openapi/v3")["paths"].get(f"apis/{group}/v1", {}).get("serverRelativeURL"),
                   what="the CRD's group-version in /openapi/v3")
    doc = _doc(api, url)
    model = doc["components"]["schemas"][".".join(reversed(group.split("."))) + ".v1.Widget"]
    assert model["properties"]["spec"]["properties"]["size"]["type"] == "integer"
    live = ext.read_custom_resource_definition(f"widgets.{group}")
    live.spec.versions[0].schema.open_apiv3_schema.properties["spec"].properties["colour"] = client.V1JSONSchemaProps(type="string")
    ext.replace_custom_resource_definition(f"widgets.{group}", live)
    wait_for(lambda: _doc(api, "/openapi/v3")["paths"][f"apis/{group}/v1"]["serverRelativeURL"] != url,
             what="a new hash after the CRD changed")
    ext.delete_custom_resource_definition(f"widgets.{group}")
