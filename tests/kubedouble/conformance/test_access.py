"""``kubectl auth can-i`` / ``auth whoami`` against the double: the access reviews as RBAC decides them.

Each test states what a real kube-apiserver (K3s: Node,RBAC authorizers; the bootstrap policy binds
system:basic-user and system:discovery to system:authenticated) answers. can-i prints yes/no and
exits 0/1 (staging/src/k8s.io/kubectl/pkg/cmd/auth/cani.go).
"""

from __future__ import annotations

import json
import uuid


def _limited_user(double, kubectl, kubectl_as, ns, rules):
    """A user with no groups but system:authenticated and one Role in ``ns``, applied by the admin."""
    name = f"u-{uuid.uuid4().hex[:6]}"
    double.add_user(name, f"{name}-token")
    # --validate=false: setup only (the OpenAPI documents of rbac.authorization.k8s.io are another area's)
    kubectl("apply", "--validate=false", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "r", "namespace": ns}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "r", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name}]}]}))
    return name, kubectl_as(name)


def test_admin_can_do_anything(kubectl):
    # system:masters is allowed by the privileged-group authorizer before RBAC: "yes", exit 0
    done = kubectl("auth", "can-i", "*", "*")
    assert (done.returncode, done.stdout) == (0, "yes\n")


def test_a_role_binding_grants_in_its_namespace_only(double, kubectl, kubectl_as, ns):
    name, as_user = _limited_user(double, kubectl, kubectl_as, ns,
                                  [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create"]}])
    yes = as_user("auth", "can-i", "create", "deployments", "-n", ns, check=False)
    assert (yes.returncode, yes.stdout) == (0, "yes\n")
    no = as_user("auth", "can-i", "create", "deployments", "-n", "default", check=False)
    assert (no.returncode, no.stdout) == (1, "no\n")
    # every authenticated user may ask (system:basic-user)
    assert as_user("auth", "can-i", "create", "selfsubjectaccessreviews", check=False).stdout == "yes\n"


def test_can_i_list_shows_the_role_and_the_default_policy(double, kubectl, kubectl_as, ns):
    _, as_user = _limited_user(double, kubectl, kubectl_as, ns,
                               [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["create", "get"]}])
    rows = [line.split() for line in as_user("auth", "can-i", "--list", "-n", ns).stdout.splitlines()]
    assert rows[0] == ["Resources", "Non-Resource", "URLs", "Resource", "Names", "Verbs"]
    assert ["deployments.apps", "[]", "[]", "[create", "get]"] in rows
    assert ["selfsubjectaccessreviews.authorization.k8s.io", "[]", "[]", "[create]"] in rows
    assert ["[/healthz]", "[]", "[get]"] in rows
    elsewhere = as_user("auth", "can-i", "--list", "-n", "default").stdout
    assert "deployments.apps" not in elsewhere


def test_whoami_prints_the_user(double, kubectl, kubectl_as, ns):
    name, as_user = _limited_user(double, kubectl, kubectl_as, ns, [])
    rows = [line.split(None, 1) for line in as_user("auth", "whoami").stdout.splitlines()]
    assert rows == [["ATTRIBUTE", "VALUE"], ["Username", name], ["Groups", "[system:authenticated]"]]


def test_subresources_and_resource_names_as_rbac_decides(double, kubectl, kubectl_as, ns):
    _, as_user = _limited_user(double, kubectl, kubectl_as, ns, [
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["services/*"], "verbs": ["get"]},   # no wildcard to RBAC
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": ["one"]}])

    def can(*args):
        return as_user("auth", "can-i", *args, "-n", ns, check=False).returncode == 0
    assert can("get", "pods", "--subresource=log")
    # kubectl reads "pods/log" as the pod named "log" (cani.go splits resource/name): rule pods/log
    # does not cover resource "pods"
    assert not can("get", "pods/log")
    assert not can("get", "pods")
    assert not can("get", "services", "--subresource=proxy")
    assert can("get", "configmaps/one")
    assert not can("get", "configmaps/two")
    assert not can("get", "configmaps")
