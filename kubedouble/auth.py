"""Authentication by bearer token and authorization by the RBAC objects in the store.

Users are configured on the double (token -> name + groups). Members of ``system:masters``
may do anything, as on a real cluster. Everyone else is checked against the Roles,
RoleBindings, ClusterRoles and ClusterRoleBindings currently stored, with the real rules:
verbs and resources accept ``*``, resources may name subresources (``pods/exec``), and
resourceNames restrict by object name. Non-resource URLs (discovery, /version) are open to
every authenticated user, as the ``system:discovery`` role grants them.
DIFFERENCES: no aggregated ClusterRoles, no ServiceAccount tokens, no impersonation.
This module reads the store and never writes it; it does not speak HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class Users:
    by_token: dict[str, User] = field(default_factory=dict)

    def add(self, user: User) -> None:
        self.by_token[user.token] = user

    def authenticate(self, header: str | None) -> User:
        if not header or not header.lower().startswith("bearer "):
            raise ApiError(401, "Unauthorized", "Unauthorized")
        user = self.by_token.get(header[7:].strip())
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user


def _rule_allows(rule: dict, a: Attributes) -> bool:
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    want = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    resources = rule.get("resources") or []
    # "pods/*" covers every subresource of pods but not pods itself; "*/scale" every scale.
    ok = any(r in ("*", want) or (a.subresource and r in (f"*/{a.subresource}", f"{a.resource}/*"))
             for r in resources)
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    if names and a.name not in names:
        return False
    return True


def _subject_matches(subjects: list, user: User) -> bool:
    for s in subjects or []:
        kind = s.get("kind")
        if kind == "User" and s.get("name") == user.name:
            return True
        if kind == "Group" and (s.get("name") in user.groups or s.get("name") == "system:authenticated"):
            return True
    return False


def _role_rules(store: Store, ref: dict, namespace: str) -> list[dict]:
    if ref.get("kind") == "ClusterRole":
        role = store.get(("rbac.authorization.k8s.io", "clusterroles"), "", ref.get("name", ""))
    else:
        role = store.get(("rbac.authorization.k8s.io", "roles"), namespace, ref.get("name", ""))
    return (role or {}).get("rules") or []


def allowed(store: Store, user: User, a: Attributes) -> bool:
    if user.is_admin:
        return True
    crbs, _ = store.list(("rbac.authorization.k8s.io", "clusterrolebindings"))
    for b in crbs:
        if _subject_matches(b.get("subjects"), user):
            if any(_rule_allows(r, a) for r in _role_rules(store, b.get("roleRef") or {}, "")):
                return True
    if a.namespace:
        rbs, _ = store.list(("rbac.authorization.k8s.io", "rolebindings"), a.namespace)
        for b in rbs:
            if _subject_matches(b.get("subjects"), user):
                if any(_rule_allows(r, a) for r in _role_rules(store, b.get("roleRef") or {}, a.namespace)):
                    return True
    return False


def forbidden(user: User, a: Attributes) -> ApiError:
    what = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    qual = f"{a.resource}.{a.group}" if a.group else a.resource
    subject = f'{qual} "{a.name}"' if a.name else qual
    where = f' in the namespace "{a.namespace}"' if a.namespace else " at the cluster scope"
    msg = (f'{subject} is forbidden: User "{user.name}" cannot {a.verb} resource "{what}" '
           f'in API group "{a.group}"{where}')
    return ApiError(403, "Forbidden", msg, {"name": a.name, "group": a.group, "kind": a.resource})


def authorize(store: Store, user: User, a: Attributes) -> None:
    if not allowed(store, user, a):
        raise forbidden(user, a)
