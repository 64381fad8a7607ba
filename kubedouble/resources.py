"""Which resources the double serves: the registry behind discovery and URL routing.

Built-in kinds as a K3s server of the configured minor serves them: each group-version-kind
carries the minor it was first served in and the one it was removed in (the Kubernetes
"Deprecated API Migration Guide", kubernetes.io/docs/reference/using-api/deprecation-guide/), so a
1.24 double serves ``batch/v1beta1`` CronJob and ``policy/v1beta1`` PodDisruptionBudget and a 1.25
one answers 404 for them, as a real server does. Versions removed in 1.22 or before
(``extensions/v1beta1``, ``rbac.authorization.k8s.io/v1beta1``, ...) are never served: the double
starts at 1.22, the oldest schemas there are. Plus kinds registered from CustomResourceDefinitions.

A built-in kind served in two versions is stored once, in its group's preferred version (the
storage version), and converted on the way in and out (``to_storage`` / ``from_storage``), so a
CronJob created through ``batch/v1beta1`` reads back through ``batch/v1``.
DIFFERENCES from the real server: ``policy/v1beta1`` serves PodDisruptionBudget only (no
PodSecurityPolicy); new beta APIs that 1.24+ serve only when enabled (KEP-3136: beta APIs off by
default), such as ``authentication.k8s.io/v1beta1`` SelfSubjectReview in 1.27, are not served.
This module must not store objects or speak HTTP; it only describes resources.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

from vtflow import crdschema

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # subresource name -> verbs ("status": get/patch/update, "exec": create/get, ...)
    subresources: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False, compare=False)
    categories: tuple[str, ...] = ()
    crd: bool = False
    # for CRD kinds: the openAPIV3Schema of this version (None for built-ins)
    schema: dict | None = field(default=None, hash=False, compare=False)
    # built-ins: the Kubernetes 1.x minor this group-version-kind was first served in, and the one
    # that no longer serves it (None: still served)
    since: int = 0
    removed: int | None = None

    def served_in(self, minor: int) -> bool:
        return self.since <= minor and (self.removed is None or minor < self.removed)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gr(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def discovery_entries(self) -> list[dict]:
        main = {"name": self.plural, "singularName": self.singular or self.kind.lower(),
                "namespaced": self.namespaced, "kind": self.kind, "verbs": list(self.verbs)}
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        for sub, verbs in self.subresources.items():
            kind = {"exec": "PodExecOptions", "log": "Pod", "scale": "Scale", "eviction": "Eviction",
                    "binding": "Binding"}.get(sub, self.kind)
            entry = {"name": f"{self.plural}/{sub}", "singularName": "", "namespaced": self.namespaced,
                     "kind": kind, "verbs": list(verbs)}
            if sub == "scale":
                entry.update(group="autoscaling", version="v1")
            out.append(entry)
        return out


_STATUS = {"status": ("get", "patch", "update")}
_SCALE = {"scale": ("get", "patch", "update")}
_CREATE = ("create",)


def _rt(group, version, plural, kind, namespaced, short=(), sub=None, verbs=ALL_VERBS, categories=(),
        since=0, removed=None):
    return ResourceType(group, version, plural, kind, namespaced, kind.lower(), tuple(short),
                        tuple(verbs), dict(sub or {}), tuple(categories), since=since, removed=removed)


# The minors below come from the migration guide ("available since", "no longer served as of") and,
# for SelfSubjectReview, from KEP-3325 (authentication.k8s.io/v1 GA in 1.28). A group's first
# version listed is its preferred (and storage) version, as discovery reports it.
def builtin_types(minor: int | None = None) -> list[ResourceType]:
    """The built-in kinds served at Kubernetes 1.``minor`` (every kind ever listed when None)."""
    every = _builtin_types()
    return every if minor is None else [rt for rt in every if rt.served_in(minor)]


def _builtin_types() -> list[ResourceType]:
    core_all = ("all",)
    return [
        _rt("", "v1", "namespaces", "Namespace", False, ("ns",), _STATUS,
            ("create", "delete", "get", "list", "patch", "update", "watch")),
        _rt("", "v1", "pods", "Pod", True, ("po",),
            {"status": ("get", "patch", "update"), "exec": ("create", "get"), "log": ("get",),
             "binding": ("create",), "eviction": ("create",)}, categories=core_all),
        _rt("", "v1", "services", "Service", True, ("svc",), _STATUS,
            ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"),
            categories=core_all),
        _rt("", "v1", "endpoints", "Endpoints", True, ("ep",)),
        _rt("", "v1", "configmaps", "ConfigMap", True, ("cm",)),
        _rt("", "v1", "secrets", "Secret", True),
        _rt("", "v1", "serviceaccounts", "ServiceAccount", True, ("sa",)),
        _rt("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",), _STATUS),
        _rt("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), _STATUS),
        _rt("", "v1", "nodes", "Node", False, ("no",), _STATUS),
        _rt("", "v1", "events", "Event", True, ("ev",)),
        _rt("apps", "v1", "deployments", "Deployment", True, ("deploy",), _STATUS | _SCALE, categories=core_all,
            since=9),
        _rt("apps", "v1", "statefulsets", "StatefulSet", True, ("sts",), _STATUS | _SCALE, categories=core_all,
            since=9),
        _rt("apps", "v1", "replicasets", "ReplicaSet", True, ("rs",), _STATUS | _SCALE, categories=core_all, since=9),
        _rt("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), _STATUS, categories=core_all, since=9),
        _rt("apps", "v1", "controllerrevisions", "ControllerRevision", True, since=9),
        _rt("batch", "v1", "jobs", "Job", True, (), _STATUS, categories=core_all),
        _rt("batch", "v1", "cronjobs", "CronJob", True, ("cj",), _STATUS, categories=core_all, since=21),
        _rt("batch", "v1beta1", "cronjobs", "CronJob", True, ("cj",), _STATUS, categories=core_all,
            since=8, removed=25),
        _rt("rbac.authorization.k8s.io", "v1", "roles", "Role", True, since=8),
        _rt("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, since=8),
        _rt("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, since=8),
        _rt("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False, since=8),
        _rt("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
            ("crd", "crds"), _STATUS, since=16),
        _rt("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",), since=14),
        _rt("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",), since=6),
        _rt("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), _STATUS, since=21),
        _rt("policy", "v1beta1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",), _STATUS,
            since=5, removed=25),
        _rt("coordination.k8s.io", "v1", "leases", "Lease", True, since=14),
        # create-only and never stored (reviews.py); tokenreviews is not served (no token API here)
        _rt("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False,
            verbs=_CREATE, since=6),
        _rt("authorization.k8s.io", "v1", "selfsubjectrulesreviews", "SelfSubjectRulesReview", False,
            verbs=_CREATE, since=6),
        _rt("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview", False,
            verbs=_CREATE, since=6),
        _rt("authorization.k8s.io", "v1", "localsubjectaccessreviews", "LocalSubjectAccessReview", True,
            verbs=_CREATE, since=6),
        _rt("authentication.k8s.io", "v1", "selfsubjectreviews", "SelfSubjectReview", False, verbs=_CREATE,
            since=28),
    ]


# -- one stored object per kind ---------------------------------------------------------------------
# policy/v1beta1 and policy/v1 read an empty selector differently (none vs all pods): the server
# stores the v1 meaning and spells the v1beta1 one with a marker expression
# (pkg/apis/policy/helper.go, v1beta1/conversion.go, v1/conversion.go)
PDB_V1BETA1_LABEL = "pdb.kubernetes.io/deprecated-v1beta1-empty-selector-match"
_MATCH_NONE = {"matchExpressions": [{"key": PDB_V1BETA1_LABEL, "operator": "Exists"}]}
_V1BETA1_MATCH_ALL = {"matchExpressions": [{"key": PDB_V1BETA1_LABEL, "operator": "DoesNotExist"}]}


def _strip_pdb_label(selector: dict) -> dict:
    exprs = [e for e in selector.get("matchExpressions") or []
             if not (isinstance(e, dict) and e.get("key") == PDB_V1BETA1_LABEL)]
    out = {k: v for k, v in selector.items() if k != "matchExpressions"}
    if exprs:
        out["matchExpressions"] = exprs
    return out


def _pdb_selector_in(selector, version: str):
    """A written selector in the stored (internal) form."""
    if not isinstance(selector, dict):
        return selector
    if version == "v1beta1":
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            return dict(_MATCH_NONE)
        if selector == _V1BETA1_MATCH_ALL:
            return {}
    elif selector == _MATCH_NONE:
        return selector
    return _strip_pdb_label(selector)


def _pdb_selector_out(selector, version: str):
    if version != "v1beta1" or not isinstance(selector, dict):
        return selector
    if selector == _MATCH_NONE:
        return {}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return dict(_V1BETA1_MATCH_ALL)
    return selector


def _converted(obj: dict, api_version: str, selector_rule, version: str) -> dict:
    out = dict(obj)
    out["apiVersion"] = api_version
    spec = obj.get("spec")
    if selector_rule and isinstance(spec, dict) and "selector" in spec:
        out["spec"] = {**spec, "selector": selector_rule(spec["selector"], version)}
    return out


def to_storage(rt: ResourceType, obj: dict, storage: ResourceType) -> dict:
    """An object written through ``rt`` as it is stored (``storage``: the kind's storage version)."""
    pdb = rt.gr == ("policy", "poddisruptionbudgets")
    if rt.crd or (storage is rt and not pdb):
        return obj
    return _converted(obj, storage.api_version, _pdb_selector_in if pdb else None, rt.version)


def from_storage(rt: ResourceType, obj: dict) -> dict:
    """A stored object as a client of ``rt`` reads it (unchanged when stored in that version).

    A custom resource is pruned and defaulted by its CRD's schema as read, as
    apiextensions-apiserver does when it decodes one from etcd ("Defaulting happens ... when
    reading from etcd using the storage version defaults"; not written back, so the
    resourceVersion stays): a default a CRD gained after the object was stored shows on every
    read, and a later update's managedFields see it in the old object, not as that update's change."""
    if rt.crd:
        return crdschema.prune_and_default(copy.deepcopy(obj), rt.schema, root=True) if rt.schema else obj
    if obj.get("apiVersion") == rt.api_version:
        return obj
    pdb = rt.gr == ("policy", "poddisruptionbudgets")
    return _converted(obj, rt.api_version, _pdb_selector_out if pdb else None, rt.version)


class Registry:
    """Thread-safe map of served resource types, changed when CRDs come and go."""

    def __init__(self, minor: int = 33) -> None:
        self.minor = minor
        self._lock = threading.Lock()
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        # group -> ordered versions (preferred first)
        self._groups: dict[str, list[str]] = {}
        # crd name -> the (group, version, plural) triples it registered
        self._crd_owned: dict[str, list[tuple[str, str, str]]] = {}
        for rt in builtin_types(minor):
            self._add(rt)

    def _add(self, rt: ResourceType) -> None:
        self._by_gvr[(rt.group, rt.version, rt.plural)] = rt
        versions = self._groups.setdefault(rt.group, [])
        if rt.version not in versions:
            versions.append(rt.version)

    # -- lookups -------------------------------------------------------------------------
    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def by_gr(self, group: str, plural: str) -> ResourceType | None:
        """The preferred version of a (group, resource)."""
        with self._lock:
            for v in self._groups.get(group, []):
                rt = self._by_gvr.get((group, v, plural))
                if rt:
                    return rt
        return None

    def storage(self, rt: ResourceType) -> ResourceType:
        """Where objects of ``rt``'s kind are stored: the group's preferred version serving it
        (custom kinds: the version written, the double does not convert them)."""
        if rt.crd:
            return rt
        return self.by_gr(rt.group, rt.plural) or rt

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for rt in self._by_gvr.values():
                if rt.group == group and rt.version == version and rt.kind == kind:
                    return rt
        return None

    def get(self, ref: str) -> ResourceType:
        """By ``"pods"`` or ``"apps/deployments"`` or ``"planetscale.com/vitessclusters"``."""
        group, _, plural = ref.rpartition("/")
        rt = self.by_gr(group, plural)
        if rt is None:
            raise KeyError(f"no resource {ref!r} is served")
        return rt

    def groups(self) -> dict[str, list[str]]:
        with self._lock:
            return {g: list(v) for g, v in self._groups.items()}

    def in_version(self, group: str, version: str) -> list[ResourceType]:
        with self._lock:
            return [rt for (g, v, _), rt in self._by_gvr.items() if g == group and v == version]

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._by_gvr.values())

    def group_resources(self) -> set[tuple[str, str]]:
        with self._lock:
            return {(rt.group, rt.plural) for rt in self._by_gvr.values()}

    # -- CRDs --------------------------------------------------------------------------
    def register_crd(self, crd: dict) -> list[ResourceType]:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group = spec.get("group", "")
        namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        name = crd["metadata"]["name"]
        added = []
        versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
        # The storage version first, then the rest as declared: the real server orders by
        # version priority; for single-version CRDs (all of vitess-operator's) it is the same.
        versions.sort(key=lambda v: (not v.get("storage", False)))
        with self._lock:
            self._remove_crd_locked(name)
            for v in versions:
                sub = {}
                if "status" in (v.get("subresources") or {}):
                    sub["status"] = ("get", "patch", "update")
                if "scale" in (v.get("subresources") or {}):
                    sub["scale"] = ("get", "patch", "update")
                rt = ResourceType(
                    group, v["name"], names.get("plural", ""), names.get("kind", ""), namespaced,
                    names.get("singular") or names.get("kind", "").lower(),
                    tuple(names.get("shortNames") or ()), ALL_VERBS, sub,
                    tuple(names.get("categories") or ()), True,
                    (v.get("schema") or {}).get("openAPIV3Schema"))
                self._add(rt)
                added.append(rt)
            self._crd_owned[name] = [(rt.group, rt.version, rt.plural) for rt in added]
        return added

    def unregister_crd(self, crd_name: str) -> None:
        with self._lock:
            self._remove_crd_locked(crd_name)

    def _remove_crd_locked(self, crd_name: str) -> None:
        for gvr in self._crd_owned.pop(crd_name, []):
            self._by_gvr.pop(gvr, None)
            group, version, _ = gvr
            if not any(g == group and v == version for g, v, _ in self._by_gvr):
                versions = self._groups.get(group, [])
                if version in versions:
                    versions.remove(version)
                if not versions:
                    self._groups.pop(group, None)
