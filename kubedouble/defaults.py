"""The defaults the real API server fills into built-in objects on every write.

Only the fields that clients and the built-in controllers read back are defaulted (replicas,
strategies, pod spec policies, container pull policy and port protocol, service type and
ports, job parallelism). Pure functions over a dict; no store, no validation.
"""

from __future__ import annotations


def _pod_spec(spec: dict) -> None:
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1]
            latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")


def _template(obj: dict) -> None:
    tpl = (obj.get("spec") or {}).get("template")
    if isinstance(tpl, dict):
        _pod_spec(tpl.setdefault("spec", {}))


def apply_defaults(group: str, plural: str, obj: dict) -> dict:
    spec = obj.get("spec")
    if group == "" and plural == "pods":
        _pod_spec(obj.setdefault("spec", {}))
    elif group == "apps" and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        if plural in ("deployments", "statefulsets", "replicasets"):
            spec.setdefault("replicas", 1)
        if plural == "deployments":
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
            spec.setdefault("progressDeadlineSeconds", 600)
        if plural == "statefulsets":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
            for t in spec.get("volumeClaimTemplates") or []:
                if isinstance(t, dict):
                    t.setdefault("apiVersion", "v1")
                    t.setdefault("kind", "PersistentVolumeClaim")
                    (t.setdefault("spec", {})).setdefault("volumeMode", "Filesystem")
        _template(obj)
    elif group == "batch" and isinstance(spec, dict):
        if plural == "jobs":
            spec.setdefault("parallelism", 1)
            spec.setdefault("completions", 1)
            spec.setdefault("backoffLimit", 6)
            _template(obj)
        if plural == "cronjobs":
            spec.setdefault("concurrencyPolicy", "Allow")
            spec.setdefault("suspend", False)
    elif group == "" and plural == "services" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                if "port" in p:
                    p.setdefault("targetPort", p["port"])
    elif group == "" and plural == "persistentvolumeclaims" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    elif group == "" and plural == "secrets":
        obj.setdefault("type", "Opaque")
    elif group == "" and plural == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    return obj
