"""Authentication by bearer token and authorization by the RBAC objects in the store.

Users are configured on the double (token -> name + groups). Members of ``system:masters``
may do anything, as on a real cluster. Everyone else is checked against the Roles,
RoleBindings, ClusterRoles and ClusterRoleBindings currently stored, with the real rules:
verbs and resources accept ``*``, resources may name subresources (``pods/exec``), and
resourceNames restrict by object name. A request without credentials is ``system:anonymous``
(group ``system:unauthenticated``, kube-apiserver's --anonymous-auth default); a token the
double does not know is 401 on every path. Non-resource URLs are authorized by the same rules
against the stored bootstrap policy (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go):
``system:public-info-viewer`` opens /healthz, /livez, /readyz and /version to everyone,
``system:discovery`` opens discovery and OpenAPI to authenticated users only (since 1.14: an
anonymous GET /api is 403).
Decisions carry the reasons K3s's authorizer chain gives ("RBAC: allowed by ..."), which the
access reviews (``reviews.py``) echo; ``bootstrap_policy`` is the part of the default policy
the server stores at start (cluster-admin, system:basic-user, system:discovery,
system:public-info-viewer, with their ClusterRoleBindings).
DIFFERENCES: no aggregated ClusterRoles, no ServiceAccount tokens, no impersonation; the other
bootstrap roles (admin/edit/view, system:controller:*) are not stored.
This module reads the store and never writes it; it does not speak HTTP.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterator

from .status import ApiError
from .store import Store


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    token: str = ""

    @property
    def is_admin(self) -> bool:
        return "system:masters" in self.groups


@dataclass
class Attributes:
    verb: str
    group: str
    resource: str
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""          # a non-resource request (/healthz, /version) has a path and no resource

    @property
    def resource_request(self) -> bool:
        return bool(self.resource) or not self.path


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))


@dataclass
class Users:
    by_token: dict[str, User] = field(default_factory=dict)

    def add(self, user: User) -> None:
        self.by_token[user.token] = user

    def authenticate(self, header: str | None) -> User:
        if not header:
            return ANONYMOUS
        if not header.lower().startswith("bearer "):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        user = self.by_token.get(header[7:].strip())
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user


def _rule_allows(rule: dict, a: Attributes) -> bool:
    """RuleAllows of plugin/pkg/auth/authorizer/rbac/rbac.go with pkg/apis/rbac/v1/evaluation_helpers.go."""
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        return any(u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u.rstrip("*")))
                   for u in rule.get("nonResourceURLs") or [])
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    want = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    # "*/scale" covers every scale subresource; "pods/*" is no wildcard to RBAC (it matches nothing)
    if not any(r in ("*", want) or (a.subresource and r == f"*/{a.subresource}")
               for r in rule.get("resources") or []):
        return False
    names = rule.get("resourceNames") or []
    return not names or a.name in names


def _subject(subjects: list, user: User, namespace: str) -> dict | None:
    """The first subject of a binding that is this user (appliesTo in pkg/registry/rbac/validation/rule.go)."""
    for s in subjects or []:
        kind = s.get("kind")
        if kind == "User" and s.get("name") == user.name:
            return s
        if kind == "Group" and s.get("name") in user.groups:
            return s
        sa_ns = s.get("namespace") or namespace
        if kind == "ServiceAccount" and sa_ns and user.name == f"system:serviceaccount:{sa_ns}:{s.get('name')}":
            return s
    return None


def _describe(s: dict, binding_ns: str) -> str:
    if s.get("kind") == "ServiceAccount":
        return f'{s["kind"]} "{s.get("name")}/{s.get("namespace") or binding_ns}"'
    return f'{s.get("kind")} "{s.get("name")}"'


def _role_rules(store: Store, ref: dict, namespace: str) -> list[dict]:
    """GetRoleReferenceRules; a missing role is an error the visitor collects, as the listers word it."""
    kind, name = ref.get("kind"), ref.get("name", "")
    if kind == "ClusterRole":
        role = store.get(("rbac.authorization.k8s.io", "clusterroles"), "", name)
    elif kind == "Role":
        role = store.get(("rbac.authorization.k8s.io", "roles"), namespace, name)
    else:
        raise LookupError(f'unsupported role reference kind: "{kind}"')
    if role is None:
        raise LookupError(f'{kind.lower()}.rbac.authorization.k8s.io "{name}" not found')
    return role.get("rules") or []


def visit_rules(store: Store, user: User, namespace: str) -> Iterator[tuple[str, dict | None, str]]:
    """Every (source, rule, error) that applies to ``user`` in ``namespace``: VisitRulesFor, in its order
    (ClusterRoleBindings, then the namespace's RoleBindings)."""
    scopes = [("", store.list(("rbac.authorization.k8s.io", "clusterrolebindings"))[0])]
    if namespace:
        scopes.append((namespace, store.list(("rbac.authorization.k8s.io", "rolebindings"), namespace)[0]))
    for ns, bindings in scopes:
        for b in bindings:
            subject = _subject(b.get("subjects"), user, ns)
            if subject is None:
                continue
            ref = b.get("roleRef") or {}
            try:
                rules = _role_rules(store, ref, ns)
            except LookupError as e:
                yield "", None, str(e)
                continue
            name = b["metadata"]["name"]
            source = (f'RoleBinding "{name}/{ns}"' if ns else f'ClusterRoleBinding "{name}"') + \
                f' of {ref.get("kind")} "{ref.get("name")}" to {_describe(subject, ns)}'
            for rule in rules:
                yield source, rule, ""


def _aggregate(errors: list[str]) -> str:
    # utilerrors.NewAggregate(...).Error(): one error as itself, several as "[a, b]"
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def decide(store: Store, user: User, a: Attributes) -> tuple[bool, str]:
    """(allowed, reason) as K3s's chain answers: the system:masters authorizer (allow, no reason),
    the Node authorizer (no opinion for non-nodes), then RBAC ("RBAC: allowed by ...")."""
    if user.is_admin:
        return True, ""
    errors = []
    for source, rule, error in visit_rules(store, user, a.namespace):
        if rule is not None and _rule_allows(rule, a):
            return True, f"RBAC: allowed by {source}"
        if error:
            errors.append(error)
    return False, f"RBAC: {_aggregate(errors)}" if errors else ""


def allowed(store: Store, user: User, a: Attributes) -> bool:
    return decide(store, user, a)[0]


def rules_for(store: Store, user: User, namespace: str) -> tuple[list[dict], list[dict], str]:
    """(resourceRules, nonResourceRules, evaluationError) of SelfSubjectRulesReview: RBAC's RulesFor."""
    resource, non_resource, errors = [], [], []
    for _, rule, error in visit_rules(store, user, namespace):
        if error:
            errors.append(error)
        if rule is None:
            continue
        if rule.get("resources"):
            resource.append({"verbs": rule.get("verbs") or []} |
                            {k: rule[k] for k in ("apiGroups", "resources", "resourceNames") if rule.get(k)})
        if rule.get("nonResourceURLs"):
            non_resource.append({"verbs": rule.get("verbs") or [], "nonResourceURLs": rule["nonResourceURLs"]})
    return resource, non_resource, _aggregate(errors) if errors else ""


def forbidden(user: User, a: Attributes, reason: str = "") -> ApiError:
    """The 403 of responsewriters.Forbidden (staging/src/k8s.io/apiserver/pkg/endpoints/handlers/
    responsewriters/errors.go): the authorizer's reason, when it has one, follows a colon."""
    why = f": {reason}" if reason else ""
    if not a.resource_request:
        return ApiError(403, "Forbidden", f'forbidden: User "{user.name}" cannot {a.verb} path "{a.path}"{why}', {})
    what = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    qual = f"{a.resource}.{a.group}" if a.group else a.resource
    subject = f'{qual} "{a.name}"' if a.name else qual
    where = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
    msg = (f'{subject} is forbidden: User "{user.name}" cannot {a.verb} resource "{what}" '
           f'in API group "{a.group}"{where}{why}')
    return ApiError(403, "Forbidden", msg, {"name": a.name, "group": a.group, "kind": a.resource})


def authorize(store: Store, user: User, a: Attributes) -> None:
    ok, reason = decide(store, user, a)
    if not ok:
        raise forbidden(user, a, reason)


_BOOTSTRAP_META = {"annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                   "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}}
# name -> (rules, subjects' groups): the part of the default policy every user relies on
# (plugin/pkg/auth/authorizer/rbac/bootstrappolicy/testdata/cluster-roles.yaml, cluster-role-bindings.yaml)
_BOOTSTRAP = {
    "cluster-admin": ([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                       {"nonResourceURLs": ["*"], "verbs": ["*"]}], ["system:masters"]),
    "system:basic-user": ([{"apiGroups": ["authorization.k8s.io"],
                            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                           {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                            "verbs": ["create"]}], ["system:authenticated"]),
    "system:discovery": ([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                               "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}],
                         ["system:authenticated"]),
    "system:public-info-viewer": ([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                                    "verbs": ["get"]}], ["system:authenticated", "system:unauthenticated"]),
}


def bootstrap_policy() -> list[tuple[tuple[str, str], dict]]:
    """The default ClusterRoles and ClusterRoleBindings a new cluster starts with, as (group-resource, object)."""
    out = []
    for name, (rules, groups) in _BOOTSTRAP.items():
        meta = {"name": name, **copy.deepcopy(_BOOTSTRAP_META)}
        out.append((("rbac.authorization.k8s.io", "clusterroles"),
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta,
                     "rules": copy.deepcopy(rules)}))
        out.append((("rbac.authorization.k8s.io", "clusterrolebindings"),
                    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                     "metadata": copy.deepcopy(meta),
                     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}
                                  for g in groups]}))
    return out
