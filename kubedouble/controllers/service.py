"""Endpoints for Services with a selector: the ready pod IPs (and not-ready ones apart).

Cluster IPs and node ports are allocated at admission (see admission.py), not here.
"""

from __future__ import annotations

from ..selectors import match_map_selector
from . import Controller
from .common import is_ready, is_terminal


class EndpointsController(Controller):
    name = "endpoints-controller"
    watches = ("services", "pods")

    def handle(self, double, change) -> None:
        if change.resource == "services":
            if change.type == "DELETED":
                m = change.obj["metadata"]
                if (change.obj.get("spec") or {}).get("selector") and double.get("endpoints", m["namespace"], m["name"]):
                    double.delete("endpoints", m["namespace"], m["name"])
            else:
                self.reconcile(double, change.obj)
            return
        ns = change.obj["metadata"].get("namespace", "")
        for svc in double.list("services", ns):
            labels = [(o["metadata"].get("labels") or {}) for o in (change.obj, change.old) if o]
            if any(match_map_selector((svc.get("spec") or {}).get("selector"), lb) for lb in labels):
                self.reconcile(double, svc)

    def reconcile(self, double, svc: dict) -> None:
        spec = svc.get("spec") or {}
        selector = spec.get("selector")
        if not selector:
            return
        ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
        ready, not_ready = [], []
        pods = [p for p in double.list("pods", ns) if match_map_selector(selector, p["metadata"].get("labels") or {})]
        for p in sorted(pods, key=lambda p: p["metadata"]["name"]):
            ip = (p.get("status") or {}).get("podIP")
            if not ip or is_terminal(p):
                continue
            addr = {"ip": ip, "nodeName": p["spec"].get("nodeName", ""),
                    "targetRef": {"kind": "Pod", "namespace": ns, "name": p["metadata"]["name"],
                                  "uid": p["metadata"]["uid"]}}
            (ready if is_ready(p) else not_ready).append(addr)
        ports = []
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            if isinstance(target, str):
                target = next((cp.get("containerPort") for p in pods for c in p["spec"].get("containers") or []
                               for cp in c.get("ports") or [] if cp.get("name") == target), port.get("port"))
            entry = {"port": target, "protocol": port.get("protocol", "TCP")}
            if port.get("name"):
                entry["name"] = port["name"]
            ports.append(entry)
        subset = {}
        if ready:
            subset["addresses"] = ready
        if not_ready:
            subset["notReadyAddresses"] = not_ready
        if subset:
            subset["ports"] = ports
        desired = {"apiVersion": "v1", "kind": "Endpoints",
                   "metadata": {"name": name, "namespace": ns, "labels": dict(svc["metadata"].get("labels") or {})},
                   "subsets": [subset] if subset else []}
        current = double.get("endpoints", ns, name)
        if current is None:
            double.create("endpoints", desired)
        elif current.get("subsets") != desired["subsets"]:
            double.mutate("endpoints", ns, name, lambda e: e.update(subsets=desired["subsets"]))
