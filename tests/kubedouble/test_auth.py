"""Bearer tokens and RBAC evaluated from the stored Role/Binding objects."""

import json
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kubedouble_helpers import api_client_for, raw


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


# -- access reviews (authorization.k8s.io/v1, authentication.k8s.io/v1) ---------------------------
# Reason strings: plugin/pkg/auth/authorizer/rbac/rbac.go ("RBAC: allowed by %s") with the binding
# describers of pkg/registry/rbac/validation/rule.go; the system:masters authorizer allows with no reason.

def _user(double, tmp_path, name):
    double.add_user(name, f"{name}-token")
    return api_client_for(double, tmp_path, user=name)


def _ssar(api, **resource_attributes) -> dict:
    return raw(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
               {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": resource_attributes}})


def _bind(api, ns, user, rules, name="r"):
    rbac = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(ns, {"metadata": {"name": name}, "rules": rules})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": f"{name}-b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]})


def test_admin_review_is_allowed_without_a_reason_and_echoes_the_spec(api):
    out = _ssar(api, verb="*", group="*", resource="*")
    assert out["kind"] == "SelfSubjectAccessReview"
    assert out["spec"] == {"resourceAttributes": {"verb": "*", "group": "*", "resource": "*"}}
    assert out["status"] == {"allowed": True}


def test_review_names_the_binding_that_allows_and_says_nothing_when_none_does(api, double, tmp_path, ns):
    bob = _user(double, tmp_path, f"bob-{ns}")
    _bind(api, ns, f"bob-{ns}", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}])
    assert _ssar(bob, verb="create", group="apps", resource="deployments", namespace=ns)["status"] == {
        "allowed": True,
        "reason": f'RBAC: allowed by RoleBinding "r-b/{ns}" of Role "r" to User "bob-{ns}"'}
    # elsewhere: no opinion from any authorizer, so no reason and not "denied" either
    assert _ssar(bob, verb="create", group="apps", resource="deployments", namespace="default")["status"] == {
        "allowed": False}


def test_a_binding_to_a_missing_role_is_the_reason_of_the_denial(api, double, tmp_path, ns):
    carol = _user(double, tmp_path, f"carol-{ns}")
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(ns, {
        "metadata": {"name": "dangling"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "missing"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": f"carol-{ns}"}]})
    reason = 'RBAC: role.rbac.authorization.k8s.io "missing" not found'
    assert _ssar(carol, verb="list", resource="pods", namespace=ns)["status"] == {"allowed": False, "reason": reason}
    # the 403 of the request itself carries the same reason after a colon (responsewriters.Forbidden)
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(carol).list_namespaced_pod(ns)
    assert json.loads(e.value.body)["message"] == (
        f'pods is forbidden: User "carol-{ns}" cannot list resource "pods" in API group "" '
        f'in the namespace "{ns}": {reason}')


def test_subresource_wildcards_and_resource_names_as_rbac_matches_them(api, double, tmp_path, ns):
    dave = _user(double, tmp_path, f"dave-{ns}")
    _bind(api, ns, f"dave-{ns}", [
        {"apiGroups": [""], "resources": ["pods/*"], "verbs": ["get"]},        # matches nothing
        {"apiGroups": ["apps"], "resources": ["*/scale"], "verbs": ["get"]},   # every scale
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["one"]}])

    def allowed(**attrs):
        return _ssar(dave, namespace=ns, **attrs)["status"]["allowed"]
    assert not allowed(verb="get", resource="pods", subresource="log", name="p")
    assert allowed(verb="get", group="apps", resource="deployments", subresource="scale", name="d")
    assert not allowed(verb="get", group="apps", resource="deployments", name="d")
    assert allowed(verb="get", resource="configmaps", name="one")
    assert not allowed(verb="get", resource="configmaps", name="two")
    assert not allowed(verb="list", resource="configmaps")


def test_review_without_attributes_is_invalid(api):
    with pytest.raises(ApiException) as e:
        raw(api, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}})
    assert e.value.status == 422
    assert json.loads(e.value.body)["message"] == (
        'SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: '
        'null: exactly one of nonResourceAttributes or resourceAttributes must be specified')


def test_reviews_are_create_only_and_never_stored(api):
    with pytest.raises(ApiException) as e:
        raw(api, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert (e.value.status, json.loads(e.value.body)["reason"]) == (405, "MethodNotAllowed")


def test_rules_review_lists_what_rbac_grants_in_the_namespace(api, double, tmp_path, ns):
    erin = _user(double, tmp_path, f"erin-{ns}")
    _bind(api, ns, f"erin-{ns}", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}])
    out = raw(erin, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
              {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {"namespace": ns}})
    status = out["status"]
    assert status["incomplete"] is False
    assert {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"]} in status["resourceRules"]
    # system:basic-user, bound to system:authenticated by the bootstrap policy
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in status["resourceRules"]
    assert {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]} \
        in status["nonResourceRules"]
    elsewhere = raw(erin, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                    {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                     "spec": {"namespace": "default"}})["status"]["resourceRules"]
    assert not any("configmaps" in r.get("resources", []) for r in elsewhere)
    with pytest.raises(ApiException) as e:
        raw(erin, "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
            {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "spec": {}})
    assert (e.value.status, json.loads(e.value.body)["message"]) == (400, "no namespace on request")


def test_self_subject_review_says_who_the_caller_is(api, double, tmp_path):
    frank = _user(double, tmp_path, f"frank-{uuid.uuid4().hex[:6]}")
    out = raw(frank, "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
              {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
    assert out["status"]["userInfo"]["username"].startswith("frank-")
    assert out["status"]["userInfo"]["groups"] == ["system:authenticated"]


def test_discovery_serves_the_reviews_create_only(api):
    authz = raw(api, "GET", "/apis/authorization.k8s.io/v1")
    by_name = {r["name"]: r for r in authz["resources"]}
    assert set(by_name) >= {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews",
                            "localsubjectaccessreviews"}
    assert by_name["selfsubjectaccessreviews"]["verbs"] == ["create"]
    assert by_name["selfsubjectaccessreviews"]["namespaced"] is False
    assert by_name["localsubjectaccessreviews"]["namespaced"] is True
    authn = raw(api, "GET", "/apis/authentication.k8s.io/v1")
    assert [(r["name"], r["verbs"]) for r in authn["resources"]] == [("selfsubjectreviews", ["create"])]


def test_a_cluster_starts_with_the_default_policy(api):
    rbac = client.RbacAuthorizationV1Api(api)
    crb = rbac.read_cluster_role_binding("cluster-admin")
    assert [(s.kind, s.name) for s in crb.subjects] == [("Group", "system:masters")]
    assert rbac.read_cluster_role("system:basic-user").metadata.labels == {
        "kubernetes.io/bootstrapping": "rbac-defaults"}


# -- the scale subresource --------------------------------------------------------------------------
def test_scale_update_with_a_stale_resource_version_is_a_conflict(apps, ns):
    apps.create_namespaced_deployment(ns, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"b": "2", "a": "1"}},
                 "template": {"metadata": {"labels": {"a": "1", "b": "2"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})
    scale = apps.read_namespaced_deployment_scale("web", ns)
    assert scale.status.selector == "a=1,b=2"          # labels.Selector.String(): sorted keys
    apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"x": "y"}}})
    scale.spec.replicas = 3
    with pytest.raises(ApiException) as e:
        apps.replace_namespaced_deployment_scale("web", ns, scale)
    assert e.value.status == 409
    assert json.loads(e.value.body)["message"].startswith('Operation cannot be fulfilled on deployments.apps "web"')
    assert apps.read_namespaced_deployment("web", ns).spec.replicas == 1
