"""The kubelets of all nodes: start bound pods, finish Job pods, simulate crash loops.

A pod bound to a node whose claims are all Bound becomes Running (pod IP from the node's pod
CIDR, containers running and ready, conditions True) after ``config.pod_start_delay`` seconds.
Pods owned by a Job finish (Succeeded, containers terminated Completed) after
``config.job_duration``. Hooks for other simulations: ``crash_loop(ns, pod, container)`` puts a
container in CrashLoopBackOff with a rising restartCount, ``set_ready(ns, pod, container, ready)``
flips its readiness, ``fail(ns, pod, container, exit_code)`` terminates the pod as Failed.
No pod is ever really run.
"""

from __future__ import annotations

import hashlib

from ..store import now_rfc3339
from . import Controller
from .common import controller_of, is_terminal, set_condition


def _pod_conditions(st: dict, ready: bool, now: str) -> None:
    conds = st.get("conditions") or []
    for t in ("PodReadyToStartContainers", "Initialized", "PodScheduled"):
        conds = set_condition(conds, t, "True", now=now)
    for t in ("Ready", "ContainersReady"):
        conds = set_condition(conds, t, "True" if ready else "False",
                              "" if ready else "ContainersNotReady",
                              "" if ready else "containers with unready status", now)
    st["conditions"] = conds


class Kubelet(Controller):
    name = "kubelet"
    watches = ("pods",)

    def __init__(self) -> None:
        self._starting: set[str] = set()
        self._crashing: set[tuple[str, str, str]] = set()
        self._ips: dict[str, int] = {}

    def reconcile(self, double, pod: dict) -> None:
        st = pod.get("status") or {}
        uid = pod["metadata"]["uid"]
        if not (pod.get("spec") or {}).get("nodeName") or st.get("phase") != "Pending" or uid in self._starting:
            return
        self._starting.add(uid)
        ns, name = pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
        double.controllers.after(double.config.pod_start_delay, lambda: self._start(double, ns, name, uid))

    def deleted(self, double, pod: dict) -> None:
        self._starting.discard(pod["metadata"]["uid"])
        double.logs.drop_pod(pod["metadata"].get("namespace", ""), pod["metadata"]["name"])
        self._crashing = {c for c in self._crashing if c[:2] != (pod["metadata"].get("namespace", ""), pod["metadata"]["name"])}

    def _claims_bound(self, double, pod: dict) -> bool:
        ns = pod["metadata"].get("namespace", "")
        for v in (pod.get("spec") or {}).get("volumes") or []:
            claim = (v or {}).get("persistentVolumeClaim")
            if claim:
                pvc = double.get("persistentvolumeclaims", ns, claim["claimName"])
                if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound":
                    return False
        return True

    def _pod_ip(self, double, node: str) -> str:
        n = double.get("nodes", "", node)
        cidr = ((n or {}).get("spec") or {}).get("podCIDR", "10.42.0.0/24")
        base = cidr.split("/")[0].rsplit(".", 1)[0]
        self._ips[node] = self._ips.get(node, 1) + 1
        return f"{base}.{self._ips[node] % 250 + 2}"

    def _start(self, double, ns: str, name: str, uid: str) -> None:
        pod = double.get("pods", ns, name)
        if pod is None or pod["metadata"]["uid"] != uid or is_terminal(pod):
            self._starting.discard(uid)
            return
        if not self._claims_bound(double, pod):
            double.controllers.after(max(0.05, double.config.pod_start_delay), lambda: self._start(double, ns, name, uid))
            return
        node = pod["spec"]["nodeName"]
        node_obj = double.get("nodes", "", node) or {}
        host_ip = next((a["address"] for a in (node_obj.get("status") or {}).get("addresses") or []
                        if a.get("type") == "InternalIP"), "127.0.0.1")
        ip = self._pod_ip(double, node)
        now = now_rfc3339()

        def run(p):
            st = p.setdefault("status", {})
            st.update(phase="Running", hostIP=host_ip, hostIPs=[{"ip": host_ip}], podIP=ip, podIPs=[{"ip": ip}],
                      startTime=now)
            st["containerStatuses"] = [self._running_status(c, uid, now) for c in p["spec"].get("containers") or []]
            if p["spec"].get("initContainers"):
                st["initContainerStatuses"] = [
                    {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": False,
                     "restartCount": 0, "containerID": self._cid(uid, c["name"]),
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}
                    for c in p["spec"]["initContainers"]]
            _pod_conditions(st, True, now)
        double.mutate("pods", ns, name, run)
        self._starting.discard(uid)
        for c in pod["spec"].get("containers") or []:
            double.record_event(pod, "Normal", "Started", f"Started container {c['name']}", "kubelet")
        owner = controller_of(pod)
        if owner and owner.get("kind") == "Job":
            double.controllers.after(double.config.job_duration, lambda: self._complete(double, ns, name, uid))

    @staticmethod
    def _cid(uid: str, container: str) -> str:
        return "containerd://" + hashlib.sha256(f"{uid}/{container}".encode()).hexdigest()

    def _running_status(self, c: dict, uid: str, now: str) -> dict:
        return {"name": c["name"], "image": c.get("image", ""), "imageID": c.get("image", ""),
                "containerID": self._cid(uid, c["name"]), "ready": True, "started": True, "restartCount": 0,
                "state": {"running": {"startedAt": now}}}

    def _complete(self, double, ns: str, name: str, uid: str, exit_code: int = 0) -> None:
        now = now_rfc3339()

        def finish(p):
            if p["metadata"]["uid"] != uid or is_terminal(p):
                return False
            st = p["status"]
            st["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            for cs in st.get("containerStatuses") or []:
                cs.update(ready=False, started=False,
                          state={"terminated": {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                                                "startedAt": now, "finishedAt": now, "containerID": cs.get("containerID")}})
            conds = st.get("conditions") or []
            for t in ("Ready", "ContainersReady", "PodReadyToStartContainers"):
                conds = set_condition(conds, t, "False", "PodCompleted" if exit_code == 0 else "PodFailed", now=now)
            st["conditions"] = conds
        double.mutate("pods", ns, name, finish)

    # -- hooks for other simulations ----------------------------------------------------------
    def fail(self, double, ns: str, name: str, exit_code: int = 1) -> None:
        pod = double.get("pods", ns, name)
        if pod:
            double.controllers.call_soon(lambda: self._complete(double, ns, name, pod["metadata"]["uid"], exit_code))

    def set_ready(self, double, ns: str, name: str, container: str, ready: bool) -> None:
        def flip(p):
            st = p.get("status") or {}
            for cs in st.get("containerStatuses") or []:
                if cs["name"] == container:
                    cs["ready"] = ready
            _pod_conditions(st, all(cs.get("ready") for cs in st.get("containerStatuses") or []), now_rfc3339())
        double.controllers.call_soon(lambda: double.mutate("pods", ns, name, flip))

    def crash_loop(self, double, ns: str, name: str, container: str, on: bool = True) -> None:
        """Put ``container`` into CrashLoopBackOff (restartCount rising every config.crash_interval)."""
        key = (ns, name, container)
        if not on:
            self._crashing.discard(key)
            pod = double.get("pods", ns, name)
            if pod:
                def recover(p):
                    for cs in (p.get("status") or {}).get("containerStatuses") or []:
                        if cs["name"] == container:
                            cs.update(ready=True, started=True, state={"running": {"startedAt": now_rfc3339()}})
                    st = p.get("status") or {}
                    _pod_conditions(st, all(cs.get("ready") for cs in st.get("containerStatuses") or []), now_rfc3339())
                double.controllers.call_soon(lambda: double.mutate("pods", ns, name, recover))
            return
        self._crashing.add(key)
        double.controllers.call_soon(lambda: self._crash_tick(double, key))

    def _crash_tick(self, double, key: tuple[str, str, str]) -> None:
        if key not in self._crashing:
            return
        ns, name, container = key
        now = now_rfc3339()

        def crash(p):
            st = p.get("status") or {}
            for cs in st.get("containerStatuses") or []:
                if cs["name"] == container:
                    cs["restartCount"] = cs.get("restartCount", 0) + 1
                    cs.update(ready=False, started=False,
                              lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": now, "finishedAt": now}},
                              state={"waiting": {"reason": "CrashLoopBackOff",
                                                 "message": f"back-off 10s restarting failed container={container} pod={name}"}})
            _pod_conditions(st, False, now)
        if double.mutate("pods", ns, name, crash) is None:
            self._crashing.discard(key)
            return
        pod = double.get("pods", ns, name)
        double.record_event(pod, "Warning", "BackOff", "Back-off restarting failed container "
                            f"{container} in pod {name}_{ns}({pod['metadata']['uid']})", "kubelet")
        double.controllers.after(double.config.crash_interval, lambda: self._crash_tick(double, key))
