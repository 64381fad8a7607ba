"""Namespaces: the ones every cluster starts with, phase Active for new ones, and termination.

Termination follows pkg/controller/namespace/deletion (namespaced_resources_deleter.go,
status_condition_utils.go): a namespace marked for deletion (phase Terminating, set by the
API) has its content deleted through the API's delete path with propagation Background, so
the content's own finalizers and pods' grace periods hold; every pass writes the five
NamespaceDeletion* / Namespace*Remaining conditions; when nothing is left the "kubernetes"
finalizer is removed from spec.finalizers and the namespace goes.
"""

from __future__ import annotations

from ..status import ApiError
from ..store import now_rfc3339
from . import Controller
from .common import set_condition

INITIAL = ("default", "kube-system", "kube-public", "kube-node-lease")
RECHECK_S = 0.05   # the real controller requeues with a rate limiter; the double polls this often

# (type, ok reason, ok message) in the order the real controller writes them
_CONDITIONS = (
    ("NamespaceDeletionDiscoveryFailure", "ResourcesDiscovered", "All resources successfully discovered"),
    ("NamespaceDeletionGroupVersionParsingFailure", "ParsedGroupVersions", "All legacy kube types successfully parsed"),
    ("NamespaceDeletionContentFailure", "ContentDeleted", "All content successfully deleted, may be waiting on finalization"),
    ("NamespaceContentRemaining", "ContentRemoved", "All content successfully removed"),
    ("NamespaceFinalizersRemaining", "ContentHasNoFinalizers", "All content-preserving finalizers finished"),
)


class NamespaceController(Controller):
    name = "namespace"
    watches = ("namespaces",)

    def start(self, double) -> None:
        for ns in INITIAL:
            if double.get("namespaces", "", ns) is None:
                double.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}})
        if double.get("services", "default", "kubernetes") is None:
            double.create("services", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"], "type": "ClusterIP",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}})

    def __init__(self) -> None:
        self._terminating: set[str] = set()

    def reconcile(self, double, obj: dict) -> None:
        if obj["metadata"].get("deletionTimestamp"):
            name = obj["metadata"]["name"]
            if name not in self._terminating:
                self._terminating.add(name)
                self._terminate(double, name, obj["metadata"]["uid"])
            return
        if (obj.get("status") or {}).get("phase"):
            return

        def activate(ns):
            ns.setdefault("status", {})["phase"] = "Active"
            ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns["metadata"]["name"]
        double.mutate("namespaces", "", obj["metadata"]["name"], activate)

    def deleted(self, double, obj: dict) -> None:
        self._terminating.discard(obj["metadata"]["name"])

    def _terminate(self, double, name: str, uid: str) -> None:
        ns = double.get("namespaces", "", name)
        if ns is None or ns["metadata"]["uid"] != uid:
            self._terminating.discard(name)
            return
        content = double.store.in_namespace(name)
        for gr, obj in content:
            rt = double.registry.by_gr(*gr)
            if rt is None or obj["metadata"].get("deletionTimestamp"):
                continue
            try:
                double.api.delete_object(rt, name, obj["metadata"]["name"], {"propagationPolicy": "Background"})
            except ApiError as e:
                if e.code != 404:
                    raise
        remaining = double.store.in_namespace(name)
        self._write_conditions(double, name, remaining)
        if remaining:
            double.controllers.after(RECHECK_S, lambda: self._terminate(double, name, uid))
            return

        def finalize(n):
            n["spec"]["finalizers"] = [f for f in (n.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        ns = double.mutate("namespaces", "", name, finalize)
        if ns is not None and not ns["metadata"].get("finalizers"):
            double.delete("namespaces", "", name)

    @staticmethod
    def _write_conditions(double, name: str, remaining: list) -> None:
        counts: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        for (group, plural), obj in remaining:
            key = f"{plural}.{group}"
            counts[key] = counts.get(key, 0) + 1
            for f in obj["metadata"].get("finalizers") or []:
                finalizers[f] = finalizers.get(f, 0) + 1
        bad = {}
        if counts:
            bad["NamespaceContentRemaining"] = ("SomeResourcesRemain", "Some resources are remaining: " + ", ".join(
                f"{k} has {n} resource instances" for k, n in sorted(counts.items())))
        if finalizers:
            bad["NamespaceFinalizersRemaining"] = (
                "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: " + ", ".join(
                    f"{f} in {n} resource instances" for f, n in sorted(finalizers.items())))
        now = now_rfc3339()

        def write(n):
            conds = list((n.get("status") or {}).get("conditions") or [])
            for type_, reason, message in _CONDITIONS:
                status, (reason, message) = ("True", bad[type_]) if type_ in bad else ("False", (reason, message))
                conds = set_condition(conds, type_, status, reason, message, now)
            order = [t for t, _, _ in _CONDITIONS]
            n.setdefault("status", {})["conditions"] = sorted(conds, key=lambda c: order.index(c["type"])
                                                              if c["type"] in order else len(order))
        double.mutate("namespaces", "", name, write)
