"""The scheduler: binds Pending pods to a node whose free allocatable covers their requests.

Free = allocatable minus the requests of the non-terminal pods already bound there. A pod's
request is the sum over its containers (a limit stands in for a missing request, as the API
defaults it), or the largest init container if that is bigger. Claims must exist, and claims
of an Immediate StorageClass must be Bound; claims of a WaitForFirstConsumer class are bound
after the pod is placed (the chosen node is written to the claim's selected-node annotation,
as the real volume binder does). nodeSelector is honoured; taints and affinity are not.
A pod that cannot be placed gets PodScheduled=False/Unschedulable and a FailedScheduling
event worded like the real scheduler's.
"""

from __future__ import annotations

from decimal import Decimal

from ..quantity import parse_quantity
from ..store import Change, now_rfc3339
from . import Controller
from .common import is_terminal, set_condition

SELECTED_NODE = "volume.kubernetes.io/selected-node"


def pod_requests(pod: dict) -> dict[str, Decimal]:
    spec = pod.get("spec") or {}

    def one(c: dict) -> dict[str, Decimal]:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        out = {}
        for k in ("cpu", "memory"):
            v = req.get(k, lim.get(k))
            out[k] = parse_quantity(v) if v is not None else Decimal(0)
        return out

    total = {"cpu": Decimal(0), "memory": Decimal(0)}
    for c in spec.get("containers") or []:
        for k, v in one(c).items():
            total[k] += v
    for c in spec.get("initContainers") or []:
        for k, v in one(c).items():
            total[k] = max(total[k], v)
    return total


def claim_names(pod: dict) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v, dict) and v.get("persistentVolumeClaim")]


class Scheduler(Controller):
    name = "default-scheduler"
    watches = ("pods", "nodes", "persistentvolumeclaims")
    resync_s = 5.0

    def handle(self, double, change: Change) -> None:
        if change.resource == "pods" and change.type != "DELETED":
            self.try_schedule(double, change.obj)
        elif change.resource == "pods":
            if (change.obj.get("spec") or {}).get("nodeName"):
                self.resync(double)
        else:
            self.resync(double)

    def resync(self, double) -> None:
        for pod in double.list("pods"):
            self.try_schedule(double, pod)

    def try_schedule(self, double, pod: dict) -> None:
        spec = pod.get("spec") or {}
        if spec.get("nodeName") or is_terminal(pod):
            return
        if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
            return
        ns = pod["metadata"].get("namespace", "")
        nodes = [n for n in double.list("nodes") if not (n.get("spec") or {}).get("unschedulable")]
        total = len(nodes)
        delayed_claims = []
        for claim in claim_names(pod):
            pvc = double.get("persistentvolumeclaims", ns, claim)
            if pvc is None:
                return self._fail(double, pod, f'persistentvolumeclaim "{claim}" not found')
            if (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            sc = double.get("storage.k8s.io/storageclasses", "", (pvc.get("spec") or {}).get("storageClassName") or "")
            if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
                delayed_claims.append(claim)
                continue
            return self._fail(double, pod,
                              f"0/{total} nodes are available: pod has unbound immediate PersistentVolumeClaims. "
                              f"preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling.")
        want = pod_requests(pod)
        used: dict[str, dict[str, Decimal]] = {}
        counts: dict[str, int] = {}
        for p in double.list("pods"):
            node = (p.get("spec") or {}).get("nodeName")
            if node and not is_terminal(p) and p["metadata"].get("uid") != pod["metadata"].get("uid"):
                r = pod_requests(p)
                u = used.setdefault(node, {"cpu": Decimal(0), "memory": Decimal(0)})
                u["cpu"] += r["cpu"]
                u["memory"] += r["memory"]
                counts[node] = counts.get(node, 0) + 1
        reasons: dict[str, int] = {}
        resource_only = 0
        fits = []
        selector = spec.get("nodeSelector") or {}
        for n in nodes:
            labels = n["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                reasons["node(s) didn't match Pod's node affinity/selector"] = reasons.get(
                    "node(s) didn't match Pod's node affinity/selector", 0) + 1
                continue
            alloc = (n.get("status") or {}).get("allocatable") or {}
            u = used.get(n["metadata"]["name"], {"cpu": Decimal(0), "memory": Decimal(0)})
            short = []
            if want["cpu"] > parse_quantity(alloc.get("cpu", "0")) - u["cpu"]:
                short.append("Insufficient cpu")
            if want["memory"] > parse_quantity(alloc.get("memory", "0")) - u["memory"]:
                short.append("Insufficient memory")
            if counts.get(n["metadata"]["name"], 0) + 1 > int(alloc.get("pods", "110")):
                short.append("Too many pods")
            if short:
                resource_only += 1
                for s in short:
                    reasons[s] = reasons.get(s, 0) + 1
                continue
            free_mem = parse_quantity(alloc.get("memory", "0")) - u["memory"]
            fits.append((free_mem, n["metadata"]["name"]))
        if not fits:
            detail = ", ".join(f"{c} {r}" for r, c in sorted(reasons.items()))
            pre = []
            if resource_only:
                pre.append(f"{resource_only} No preemption victims found for incoming pod")
            if total - resource_only:
                pre.append(f"{total - resource_only} Preemption is not helpful for scheduling")
            return self._fail(double, pod, f"0/{total} nodes are available: {detail}. "
                                           f"preemption: 0/{total} nodes are available: {', '.join(pre)}.")
        # LeastAllocated-like: the node with the most free memory; name breaks ties stably
        fits.sort(key=lambda f: (-f[0], f[1]))
        node = fits[0][1]
        for claim in delayed_claims:
            double.mutate("persistentvolumeclaims", ns, claim,
                          lambda c: c["metadata"].setdefault("annotations", {}).__setitem__(SELECTED_NODE, node))

        def bind(p):
            if p["spec"].get("nodeName"):
                return False
            p["spec"]["nodeName"] = node
            st = p.setdefault("status", {})
            st["conditions"] = set_condition(st.get("conditions"), "PodScheduled", "True", now=now_rfc3339())
        double.mutate("pods", ns, pod["metadata"]["name"], bind)
        double.record_event(pod, "Normal", "Scheduled",
                            f"Successfully assigned {ns}/{pod['metadata']['name']} to {node}", "default-scheduler")

    def _fail(self, double, pod: dict, message: str) -> None:
        def mark(p):
            st = p.setdefault("status", {})
            st["phase"] = "Pending"
            st["conditions"] = set_condition(st.get("conditions"), "PodScheduled", "False", "Unschedulable",
                                             message, now_rfc3339())
        double.mutate("pods", pod["metadata"].get("namespace", ""), pod["metadata"]["name"], mark)
        double.record_event(pod, "Warning", "FailedScheduling", message, "default-scheduler")
