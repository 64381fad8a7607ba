"""Namespaces: the ones every cluster starts with, and phase Active for new ones."""

from __future__ import annotations

from . import Controller

INITIAL = ("default", "kube-system", "kube-public", "kube-node-lease")


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

    def reconcile(self, double, obj: dict) -> None:
        if (obj.get("status") or {}).get("phase"):
            return

        def activate(ns):
            ns.setdefault("status", {})["phase"] = "Active"
            ns["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = ns["metadata"]["name"]
        double.mutate("namespaces", "", obj["metadata"]["name"], activate)
