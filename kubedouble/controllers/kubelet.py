"""The kubelets of all nodes: resolve each container's environment, run its simulated process, restart it.

A pod bound to a node whose claims are all Bound gets its pod IP from the node's pod CIDR after
``config.pod_start_delay`` seconds; then each container starts as a real kubelet starts it:
  1. its environment is resolved (``resolve_env``: ``envFrom``, then ``env`` with ``value``,
     ``$(VAR)`` references, ``fieldRef``, ``configMapKeyRef``/``secretKeyRef``, ``resourceFieldRef``);
     a missing ConfigMap/Secret or key that is not ``optional`` keeps it waiting in
     CreateContainerConfigError with the kubelet's message (retried every ``crash_interval``);
  2. its process runs: the newest registered *program* that recognises the container
     (``add_program``; the Vitess simulation registers the vitess-operator, etcd-operator and
     Vitess components) says what it writes to its log and whether it exits; without one the
     container just runs;
  3. an exit (any exit under restartPolicy Always, a non-zero one under OnFailure) is a crash:
     ``lastState.terminated`` (exit code, reason Error), ``state.waiting`` CrashLoopBackOff with the
     kubelet's back-off (10 s doubling to 5 min, scaled so the first is ``config.crash_interval``
     seconds), then a restart (``restartCount`` + 1, a new containerID, the log moves to previous).
     Under restartPolicy Never the pod ends Failed.
Pods owned by a Job finish (Succeeded) after ``config.job_duration``. Hooks for tests and other
simulations: ``crash_loop(ns, pod, container)`` makes the container crash on every start (and
kills the running instance), ``set_ready`` flips readiness, ``fail`` terminates the pod as Failed,
``environment`` returns the resolved environment of a running container. No pod is ever really run.
SIMPLIFIED: the first restart after a crash also waits one back-off (the real one restarts at
once); no probes; no service-link variables (KUBERNETES_SERVICE_HOST, ...).
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..status import ApiError
from ..store import now_rfc3339
from . import Controller
from .common import controller_of, is_terminal, set_condition

BACKOFF_S, BACKOFF_MAX_S = 10, 300          # kubelet: initial and maximum crash-loop back-off


@dataclass
class Run:
    """What a simulated process does when its container starts: the lines it writes, and its exit
    (``exit_code`` None: it keeps running)."""
    lines: list[str] = field(default_factory=list)
    exit_code: Optional[int] = None
    reason: str = "Error"
    message: str = ""


# program(double, pod, container, env) -> Run, or None when it does not recognise the container
Program = Callable[[object, dict, dict, dict], Optional[Run]]


class ContainerConfigError(Exception):
    """The container's environment cannot be built: it waits in CreateContainerConfigError."""


_META_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
_VAR_REF = re.compile(r"\$\$|\$\(([-._a-zA-Z0-9]+)\)")


def field_value(pod: dict, path: str) -> str:
    """A downward-API ``fieldRef`` (kubelet podFieldSelectorRuntimeValue / fieldpath.ExtractFieldPathAsString)."""
    meta, spec, st = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"), "status.hostIP": st.get("hostIP"),
              "status.podIP": st.get("podIP"),
              "status.hostIPs": ",".join(i["ip"] for i in st.get("hostIPs") or []),
              "status.podIPs": ",".join(i["ip"] for i in st.get("podIPs") or [])}
    if path in simple:
        return simple[path] or ""
    m = _META_KEY.match(path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    raise ContainerConfigError(f"unsupported fieldPath: {path}")


def _expand(value: str, env: dict[str, str]) -> str:
    # $(VAR) of a variable defined before; unknown references stay as written; $$ escapes
    return _VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


def resolve_env(double, pod: dict, container: dict) -> dict[str, str]:
    """The environment the kubelet builds for ``container`` (kubelet makeEnvironmentVariables).

    Raises ContainerConfigError with the kubelet's message for a missing ConfigMap/Secret
    (``configmap "x" not found``) or key (``couldn't find key k in ConfigMap ns/x``) not optional.
    """
    ns = pod["metadata"].get("namespace", "")
    cache: dict[tuple[str, str], dict | None] = {}

    def source(kind: str, name: str, optional: bool) -> dict | None:
        if (kind, name) not in cache:
            obj = double.get("configmaps" if kind == "ConfigMap" else "secrets", ns, name)
            if obj is None:
                cache[(kind, name)] = None
            elif kind == "ConfigMap":
                cache[(kind, name)] = {**(obj.get("data") or {}),
                                       **{k: base64.b64decode(v).decode("utf-8", "replace")
                                          for k, v in (obj.get("binaryData") or {}).items()}}
            else:
                cache[(kind, name)] = {k: base64.b64decode(v).decode("utf-8", "replace")
                                       for k, v in (obj.get("data") or {}).items()}
        data = cache[(kind, name)]
        if data is None and not optional:
            raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
        return data

    env: dict[str, str] = {}
    for ef in container.get("envFrom") or []:
        kind, ref = ("ConfigMap", ef["configMapRef"]) if ef.get("configMapRef") else ("Secret", ef.get("secretRef") or {})
        data = source(kind, ref.get("name", ""), bool(ref.get("optional")))
        for k, v in (data or {}).items():
            env[ef.get("prefix", "") + k] = v
    for e in container.get("env") or []:
        vf = e.get("valueFrom")
        if not vf:
            env[e["name"]] = _expand(e.get("value") or "", env)
        elif vf.get("fieldRef"):
            env[e["name"]] = field_value(pod, vf["fieldRef"].get("fieldPath", ""))
        elif vf.get("resourceFieldRef"):
            # SIMPLIFIED: the quantity as written, without the divisor's conversion
            res, _, what = vf["resourceFieldRef"].get("resource", "").partition(".")
            env[e["name"]] = str(((container.get("resources") or {}).get(res) or {}).get(what, ""))
        else:
            kind, ref = ("ConfigMap", vf["configMapKeyRef"]) if vf.get("configMapKeyRef") else ("Secret", vf.get("secretKeyRef") or {})
            optional = bool(ref.get("optional"))
            data = source(kind, ref.get("name", ""), optional)
            if data is None:
                continue
            if ref.get("key") not in data:
                if optional:
                    continue
                raise ContainerConfigError(f"couldn't find key {ref.get('key')} in {kind} {ns}/{ref.get('name')}")
            env[e["name"]] = data[ref["key"]]
    return env


def _go_duration(seconds: int) -> str:
    m, s = divmod(seconds, 60)
    return f"{m}m{s}s" if m else f"{s}s"


def _pod_conditions(st: dict, now: str) -> None:
    statuses = st.get("containerStatuses") or []
    unready = [cs["name"] for cs in statuses if not cs.get("ready")]
    ready = not unready
    conds = st.get("conditions") or []
    for t in ("PodReadyToStartContainers", "Initialized", "PodScheduled"):
        conds = set_condition(conds, t, "True", now=now)
    for t in ("Ready", "ContainersReady"):
        conds = set_condition(conds, t, "True" if ready else "False",
                              "" if ready else "ContainersNotReady",
                              "" if ready else f"containers with unready status: [{' '.join(unready)}]", now)
    st["conditions"] = conds


def _restarts(pod: dict, exit_code: int) -> bool:
    """Does the kubelet start a container again after it exited with ``exit_code``?"""
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def _phase(pod: dict) -> str:
    # kubelet getPhase: a container waiting that never ran keeps the pod Pending
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if any("waiting" in (cs.get("state") or {}) and not cs.get("lastState") for cs in statuses):
        return "Pending"
    return "Running"


class Kubelet(Controller):
    name = "kubelet"
    watches = ("pods",)

    def __init__(self) -> None:
        self._starting: set[str] = set()
        self._crashing: set[tuple[str, str, str]] = set()
        self._stopping: set[str] = set()
        self._ips: dict[str, int] = {}
        self._programs: list[Program] = []
        self._env: dict[tuple[str, str], dict[str, str]] = {}    # (pod uid, container) -> running env

    def add_program(self, program: Program) -> None:
        """Register a simulated process; the newest one that recognises a container decides."""
        self._programs.append(program)

    def environment(self, pod: dict, container: str) -> dict[str, str] | None:
        """The resolved environment of ``container``'s running instance in ``pod``, None when not running."""
        cs = next((c for c in (pod.get("status") or {}).get("containerStatuses") or [] if c["name"] == container), None)
        if cs is None or "running" not in (cs.get("state") or {}):
            return None
        return self._env.get((pod["metadata"]["uid"], container))

    def reconcile(self, double, pod: dict) -> None:
        st = pod.get("status") or {}
        uid = pod["metadata"]["uid"]
        if pod["metadata"].get("deletionTimestamp"):
            self._begin_termination(double, pod)
            return
        if not (pod.get("spec") or {}).get("nodeName") or st.get("phase") != "Pending" or uid in self._starting:
            return
        self._starting.add(uid)
        ns, name = pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
        double.controllers.after(double.config.pod_start_delay, lambda: self._start(double, ns, name, uid))

    def deleted(self, double, pod: dict) -> None:
        self._starting.discard(pod["metadata"]["uid"])
        self._env = {k: v for k, v in self._env.items() if k[0] != pod["metadata"]["uid"]}
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
        if pod is None or pod["metadata"]["uid"] != uid or is_terminal(pod) or pod["metadata"].get("deletionTimestamp"):
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
        view = {**pod, "status": {**(pod.get("status") or {}), "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
                                  "podIP": ip, "podIPs": [{"ip": ip}], "startTime": now}}
        statuses = [self._run_instance(double, view, c, 0, None) for c in pod["spec"].get("containers") or []]

        def run(p):
            if p["metadata"]["uid"] != uid:
                return False
            st = p.setdefault("status", {})
            st.update({k: view["status"][k] for k in ("hostIP", "hostIPs", "podIP", "podIPs", "startTime")})
            st["containerStatuses"] = statuses
            if p["spec"].get("initContainers"):
                st["initContainerStatuses"] = [
                    {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": True, "started": False,
                     "restartCount": 0, "containerID": self._cid(uid, c["name"]),
                     "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now}}}
                    for c in p["spec"]["initContainers"]]
            st["phase"] = _phase(p)
            _pod_conditions(st, now)
        double.mutate("pods", ns, name, run)
        self._starting.discard(uid)
        self._after_start(double, double.get("pods", ns, name), statuses)
        owner = controller_of(pod)
        if owner and owner.get("kind") == "Job" and all("running" in cs["state"] for cs in statuses):
            double.controllers.after(double.config.job_duration, lambda: self._complete(double, ns, name, uid))

    # -- one container instance -----------------------------------------------------------------
    def _program(self, double, pod: dict, c: dict, env: dict) -> Run:
        for program in reversed(self._programs):
            run = program(double, pod, c, env)
            if run is not None:
                return run
        return Run()

    def _backoff_s(self, double, restarts: int) -> tuple[int, float]:
        """(the real back-off in seconds, the scaled delay the double waits) before restart ``restarts + 1``."""
        real = min(BACKOFF_S * 2 ** max(restarts - 1, 0), BACKOFF_MAX_S)
        return real, double.config.crash_interval * real / BACKOFF_S

    def _run_instance(self, double, pod: dict, c: dict, restarts: int, last: dict | None) -> dict:
        """Start instance number ``restarts`` of container ``c``; its containerStatus. Writes its log."""
        ns, name, uid = pod["metadata"].get("namespace", ""), pod["metadata"]["name"], pod["metadata"]["uid"]
        now = now_rfc3339()
        cs = {"name": c["name"], "image": c.get("image", ""), "imageID": c.get("image", ""), "ready": False,
              "started": False, "restartCount": restarts}
        if last:
            cs["lastState"] = last
        try:
            env = resolve_env(double, pod, c)
        except ContainerConfigError as e:
            cs["state"] = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            return cs
        cid = self._cid(uid, c["name"], restarts)
        if restarts:
            double.logs.restart(ns, name, c["name"])
        self._env[(uid, c["name"])] = env
        run = Run(exit_code=1) if (ns, name, c["name"]) in self._crashing else self._program(double, pod, c, env)
        for line in run.lines:
            double.log(ns, name, c["name"], line)
        cs["containerID"] = cid
        if run.exit_code is None:
            cs.update(ready=True, started=True, state={"running": {"startedAt": now}})
            return cs
        term = {"exitCode": run.exit_code, "reason": run.reason, "startedAt": now, "finishedAt": now, "containerID": cid}
        if run.message:
            term["message"] = run.message
        if not _restarts(pod, run.exit_code):
            cs["state"] = {"terminated": term}
            return cs
        return self._backing_off(double, pod, cs, term)

    def _backing_off(self, double, pod: dict, cs: dict, term: dict) -> dict:
        """``cs`` after its instance ended with ``term``: restarted at once the first time (it shows
        terminated until then), waiting in CrashLoopBackOff after that."""
        ns, name, uid = pod["metadata"].get("namespace", ""), pod["metadata"]["name"], pod["metadata"]["uid"]
        if not cs.get("restartCount"):
            return {**cs, "ready": False, "started": False, "state": {"terminated": term}}
        real, _ = self._backoff_s(double, cs["restartCount"])
        return {**cs, "ready": False, "started": False, "lastState": {"terminated": term},
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message":
                                      f"back-off {_go_duration(real)} restarting failed container={cs['name']} "
                                      f"pod={name}_{ns}({uid})"}}}

    def _after_start(self, double, pod: dict | None, statuses: list[dict]) -> None:
        """Events and the next step of every container just started: a retry, or a restart after back-off."""
        if pod is None:
            return
        ns, name, uid = pod["metadata"].get("namespace", ""), pod["metadata"]["name"], pod["metadata"]["uid"]
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") == "CreateContainerConfigError":
                double.record_event(pod, "Warning", "Failed", f"Error: {waiting['message']}", "kubelet")
                delay = double.config.crash_interval
            elif "terminated" in (cs.get("state") or {}):
                if not _restarts(pod, cs["state"]["terminated"]["exitCode"]):
                    continue
                double.record_event(pod, "Normal", "Started", f"Started container {cs['name']}", "kubelet")
                delay = 0
            elif waiting.get("reason") == "CrashLoopBackOff":
                double.record_event(pod, "Normal", "Started", f"Started container {cs['name']}", "kubelet")
                double.record_event(pod, "Warning", "BackOff", "Back-off restarting failed container "
                                    f"{cs['name']} in pod {name}_{ns}({uid})", "kubelet")
                delay = self._backoff_s(double, cs["restartCount"])[1]
            else:
                if "running" in (cs.get("state") or {}):
                    double.record_event(pod, "Normal", "Started", f"Started container {cs['name']}", "kubelet")
                continue
            key = (cs["name"], cs["restartCount"], cs.get("containerID"))
            double.controllers.after(delay, lambda key=key: self._restart(double, ns, name, uid, key))

    def _restart(self, double, ns: str, name: str, uid: str, key: tuple) -> None:
        """Start the container again, unless its status moved on meanwhile (or the pod is going)."""
        cname, restarts, cid = key
        pod = double.get("pods", ns, name)
        if pod is None or pod["metadata"]["uid"] != uid or is_terminal(pod) or pod["metadata"].get("deletionTimestamp"):
            return
        cs = next((x for x in (pod.get("status") or {}).get("containerStatuses") or [] if x["name"] == cname), None)
        c = next((x for x in pod["spec"].get("containers") or [] if x["name"] == cname), None)
        state = (cs or {}).get("state") or {}
        if cs is None or c is None or "running" in state or \
                ("terminated" in state and not _restarts(pod, state["terminated"]["exitCode"])) or \
                (cs.get("restartCount"), cs.get("containerID")) != (restarts, cid):
            return
        ran = cs.get("containerID") is not None
        new = self._run_instance(double, pod, c, restarts + 1 if ran else restarts, cs.get("lastState"))
        self._set_status(double, ns, name, uid, new)
        self._after_start(double, double.get("pods", ns, name), [new])

    @staticmethod
    def _set_status(double, ns: str, name: str, uid: str, new: dict) -> None:
        def put(p):
            if p["metadata"]["uid"] != uid:
                return False
            st = p.setdefault("status", {})
            st["containerStatuses"] = [new if x["name"] == new["name"] else x for x in st.get("containerStatuses") or []]
            st["phase"] = _phase(p)
            _pod_conditions(st, now_rfc3339())
        double.mutate("pods", ns, name, put)

    @staticmethod
    def _cid(uid: str, container: str, instance: int = 0) -> str:
        return "containerd://" + hashlib.sha256(f"{uid}/{container}/{instance}".encode()).hexdigest()

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

    # -- pod termination (graceful deletion) ---------------------------------------------------
    # A pod marked for deletion on a node: the kubelet stops its containers within the grace
    # period, writes the terminal status (kubelet 1.27+: phase Succeeded/Failed before removal),
    # then deletes the pod with grace 0 and a uid precondition (pkg/kubelet/status/status_manager.go).
    # The wait is the SIMULATED kubelet's speed (config.pod_stop_delay: its processes have
    # nothing to flush and exit on SIGTERM), never longer than the grace period; it is not an
    # API rule. A pod on a node that is gone stays Terminating, as on a real cluster.
    def _begin_termination(self, double, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        node = (pod.get("spec") or {}).get("nodeName")
        if uid in self._stopping or not node or double.get("nodes", "", node) is None:
            return
        if is_terminal(pod) and not pod["metadata"].get("deletionGracePeriodSeconds"):
            return  # stopped and handed back already; only its finalizers keep it
        self._stopping.add(uid)
        ns, name = pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
        grace = pod["metadata"].get("deletionGracePeriodSeconds") or 0
        delay = min(float(grace), double.config.pod_stop_delay)
        double.controllers.after(delay, lambda: self._stop(double, ns, name, uid))

    def _stop(self, double, ns: str, name: str, uid: str) -> None:
        now = now_rfc3339()

        def stopped(p):
            if p["metadata"]["uid"] != uid:
                return False
            st = p.setdefault("status", {})
            for cs in st.get("containerStatuses") or []:
                if "terminated" in (cs.get("state") or {}):
                    continue
                started = ((cs.get("state") or {}).get("running") or {}).get("startedAt", now)
                cs.update(ready=False, started=False,
                          state={"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                                "finishedAt": now, "containerID": cs.get("containerID")}})
            if not is_terminal(p):
                codes = [cs["state"]["terminated"]["exitCode"] for cs in st.get("containerStatuses") or []]
                st["phase"] = "Succeeded" if all(c == 0 for c in codes) else "Failed"
            conds = st.get("conditions") or []
            for t in ("Ready", "ContainersReady"):
                conds = set_condition(conds, t, "False", "PodCompleted", now=now)
            st["conditions"] = conds
        if double.mutate("pods", ns, name, stopped) is None:
            self._stopping.discard(uid)
            return
        pod = double.get("pods", ns, name)
        if pod is not None and pod["metadata"]["uid"] == uid:
            for c in pod["spec"].get("containers") or []:
                double.record_event(pod, "Normal", "Killing", f"Stopping container {c['name']}", "kubelet")
            try:
                double.api.delete_object(double.registry.by_gr("", "pods"), ns, name,
                                         {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
            except ApiError as e:
                if e.code not in (404, 409):
                    raise
        self._stopping.discard(uid)

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
            _pod_conditions(st, now_rfc3339())
        double.controllers.call_soon(lambda: double.mutate("pods", ns, name, flip))

    def crash_loop(self, double, ns: str, name: str, container: str, on: bool = True) -> None:
        """Make ``container`` exit with code 1 at every start, killing the running instance now; with
        ``on=False`` the cause is gone and a container in back-off is restarted at once."""
        key = (ns, name, container)
        if on:
            self._crashing.add(key)
        else:
            self._crashing.discard(key)
        double.controllers.call_soon(lambda: self._kick(double, key, on))

    def _kick(self, double, key: tuple[str, str, str], crash: bool) -> None:
        ns, name, container = key
        pod = double.get("pods", ns, name)
        cs = next((x for x in ((pod or {}).get("status") or {}).get("containerStatuses") or [] if x["name"] == container), None)
        if cs is None:
            return
        state = cs.get("state") or {}
        if crash and "running" in state:
            new = self._backing_off(double, pod, cs, {
                "exitCode": 1, "reason": "Error", "startedAt": state["running"].get("startedAt"),
                "finishedAt": now_rfc3339(), "containerID": cs.get("containerID")})
        elif not crash and "waiting" in state:
            c = next(x for x in pod["spec"]["containers"] if x["name"] == container)
            new = self._run_instance(double, pod, c, cs.get("restartCount", 0) + 1, cs.get("lastState"))
        else:
            return
        self._set_status(double, ns, name, pod["metadata"]["uid"], new)
        self._after_start(double, double.get("pods", ns, name), [new])
