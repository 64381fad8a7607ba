"""Discovery through the official client: /version, /api, /apis, and the DynamicClient."""

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from kubedouble_helpers import raw


def test_version(api):
    v = client.VersionApi(api).get_code()
    assert v.git_version == "v1.33.5+k3s1"
    assert (v.major, v.minor) == ("1", "33")


def test_api_groups_list_the_served_groups(api):
    groups = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    for g in ("apps", "batch", "rbac.authorization.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
              "storage.k8s.io", "policy", "coordination.k8s.io"):
        assert g in groups
    assert groups["apps"].preferred_version.group_version == "apps/v1"
    assert "extensions" not in groups


def test_core_resources_have_subresources(api):
    names = {r.name: r for r in client.CoreV1Api(api).get_api_resources().resources}
    assert {"pods", "pods/status", "pods/exec", "pods/log", "services", "nodes", "events"} <= set(names)
    assert names["pods"].namespaced and not names["nodes"].namespaced
    assert "po" in names["pods"].short_names


def test_dynamic_client_finds_builtin_kinds(dyn):
    deploy = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    assert deploy.name == "deployments" and deploy.namespaced
    crd = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition")
    assert not crd.namespaced


@pytest.mark.parametrize("path", ["/apis/rbac.authorization.k8s.io/v1beta1/clusterroles",
                                  "/apis/extensions/v1beta1/namespaces/default/deployments",
                                  "/apis/apiextensions.k8s.io/v1beta1/customresourcedefinitions"])
def test_removed_api_versions_are_not_served(api, path):
    with pytest.raises(ApiException) as e:
        raw(api, "GET", path)
    assert e.value.status == 404


def test_dynamic_client_does_not_know_removed_versions(dyn):
    with pytest.raises(ResourceNotFoundError):
        dyn.resources.get(api_version="rbac.authorization.k8s.io/v1beta1", kind="ClusterRole")
