"""Bearer tokens and RBAC evaluated from the stored Role/Binding objects."""

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubedouble_helpers import api_client_for


@pytest.fixture(scope="module")
def alice(double, tmp_path_factory):
    double.add_user("alice", "alice-token", ["devs"])
    return client.CoreV1Api(api_client_for(double, tmp_path_factory.mktemp("alice"), user="alice"))


def test_unknown_token_is_401(double, tmp_path):
    path = double.kubeconfig(tmp_path / "kc", user="admin")
    path.write_text(path.read_text().replace("kubedouble-admin-token", "wrong-token"))
    from kubernetes import config
    core = client.CoreV1Api(config.new_client_from_config(str(path)))
    with pytest.raises(ApiException) as e:
        core.list_namespace()
    assert e.value.status == 401


def test_denied_get_and_list_have_the_real_messages(alice, ns):
    with pytest.raises(ApiException) as e:
        alice.read_namespaced_pod("x", ns)
    assert e.value.status == 403
    st = json.loads(e.value.body)
    assert st["reason"] == "Forbidden"
    assert st["message"] == (f'pods "x" is forbidden: User "alice" cannot get resource "pods" in API group "" '
                             f'in the namespace "{ns}"')
    with pytest.raises(ApiException) as e:
        alice.list_namespaced_pod(ns)
    assert json.loads(e.value.body)["message"] == (
        f'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "{ns}"')
    with pytest.raises(ApiException) as e:
        alice.list_node()
    assert json.loads(e.value.body)["message"].endswith("at the cluster scope")


def test_role_binding_grants_in_its_namespace_only(api, alice, ns):
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(ns, client.V1Role(metadata=client.V1ObjectMeta(name="cm-reader"), rules=[
        client.V1PolicyRule(api_groups=[""], resources=["configmaps"], verbs=["get", "list"])]))
    rbac.create_namespaced_role_binding(ns, client.V1RoleBinding(
        metadata=client.V1ObjectMeta(name="alice-reads"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="cm-reader"),
        subjects=[client.RbacV1Subject(kind="User", name="alice", api_group="rbac.authorization.k8s.io")]))
    assert alice.list_namespaced_config_map(ns).items == []
    with pytest.raises(ApiException) as e:
        alice.create_namespaced_config_map(ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="x")))
    assert e.value.status == 403
    with pytest.raises(ApiException) as e:
        alice.list_namespaced_config_map("default")
    assert e.value.status == 403


def test_cluster_role_for_group_with_wildcards_and_resource_names(api, alice, ns):
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_cluster_role(client.V1ClusterRole(metadata=client.V1ObjectMeta(name="kd-devs"), rules=[
        client.V1PolicyRule(api_groups=["*"], resources=["nodes"], verbs=["*"]),
        client.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["get"], resource_names=["allowed"])]))
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name="kd-devs"),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="kd-devs"),
        subjects=[client.RbacV1Subject(kind="Group", name="devs", api_group="rbac.authorization.k8s.io")]))
    assert len(alice.list_node().items) == 3
    client.CoreV1Api(api).create_namespaced_secret(ns, client.V1Secret(metadata=client.V1ObjectMeta(name="allowed")))
    assert alice.read_namespaced_secret("allowed", ns).metadata.name == "allowed"
    with pytest.raises(ApiException) as e:
        alice.read_namespaced_secret("other", ns)
    assert e.value.status == 403


def test_exec_needs_the_pods_exec_subresource(alice, ns):
    from kubernetes.stream import stream
    with pytest.raises(ApiException) as e:
        stream(alice.connect_get_namespaced_pod_exec, "p", ns, command=["true"], stdout=True, stderr=True,
               stdin=False, tty=False)
    assert "403" in str(e.value)
