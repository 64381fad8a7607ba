"""Server-side printing: the meta.k8s.io Table a real server returns to ``kubectl get``.

``negotiate`` reads the Accept header as the real server's content negotiation does (the first
media type it can serve wins; a Table only when asked for by ``as=Table;g=meta.k8s.io``);
``to_table`` turns a list of objects into the Table of their kind. The columns and cells are
those of the real printers: kubernetes pkg/printers/internalversion/printers.go for the built-in
kinds this stack uses, apiextensions-apiserver's tableconvertor for custom resources
(``additionalPrinterColumns``, else Age), and apiserver pkg/registry/rest/table.go (Name, Created
At) for every other kind. Pure functions over dicts: no store, no HTTP.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from typing import Any, Callable

from .status import ApiError, bad_request

_NAME_DOC = ("Name must be unique within a namespace. Is required when creating resources, although some "
             "resources may allow a client to request the generation of an appropriate name automatically. "
             "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
             "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names")
_CREATED_DOC = ("CreationTimestamp is a timestamp representing the server time when this object was created. "
                "It is not guaranteed to be set in happens-before order across separate operations. Clients may "
                "not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the "
                "system. Read-only. Null for lists. More info: "
                "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def negotiate(accept: str | None) -> str | None:
    """The Table version (``"v1"``/``"v1beta1"``) the client asked for, or None for the plain object.

    Raises 406 when no media range of the header is one this server produces.
    """
    if not accept or not accept.strip():
        return None
    for rng in accept.split(","):
        parts = [p.strip() for p in rng.split(";")]
        mtype, params = parts[0].lower(), dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        params = {k.strip().lower(): v.strip() for k, v in params.items()}
        if mtype not in ("application/json", "application/*", "*/*", "application/yaml"):
            continue
        as_kind = params.get("as")
        if as_kind is None:
            return None
        if as_kind == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1") \
                and mtype != "application/yaml":
            return params["v"]
    raise ApiError(406, "NotAcceptable", f"only the following media types are accepted: application/json, "
                                         f"application/yaml, application/vnd.kubernetes.protobuf", {})


# -- cells ---------------------------------------------------------------------------------------
def human_duration(seconds: float) -> str:
    """apimachinery pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    try:
        t = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(timezone.utc) - t).total_seconds())


def _age(o: dict) -> str:
    return _since(o["metadata"].get("creationTimestamp"))


def _or_none(values) -> str:
    text = ",".join(v for v in values if v)
    return text or "<none>"


def _selector_text(sel: dict | None) -> str:
    """metav1.FormatLabelSelector."""
    if not sel:
        return "<none>"
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op, vals = e.get("operator"), ",".join(e.get("values") or [])
        parts.append({"In": f"{e['key']} in ({vals})", "NotIn": f"{e['key']} notin ({vals})",
                      "Exists": e["key"], "DoesNotExist": f"!{e['key']}"}.get(op, e["key"]))
    return ",".join(parts) or "<none>"


def _containers(o: dict, path=("spec", "template", "spec")) -> list[dict]:
    cur: Any = o
    for k in path:
        cur = (cur or {}).get(k)
    return (cur or {}).get("containers") or []


def _wide_images(o: dict) -> list[str]:
    cs = _containers(o)
    return [",".join(c["name"] for c in cs), ",".join(c.get("image", "") for c in cs)]


def _col(name: str, typ: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> dict:
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


_NAME = _col("Name", fmt="name", description=_NAME_DOC)
_AGE = _col("Age", description=_CREATED_DOC)


# -- the printers of pkg/printers/internalversion/printers.go ------------------------------------
def _pod_status(pod: dict) -> tuple[str, int, str]:
    """(STATUS, restarts, last restart age) as printPod computes them."""
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    reason = status.get("reason") or status.get("phase") or ""
    restarts, last_restart = 0, ""
    init_statuses = status.get("initContainerStatuses") or []
    initializing = False
    for i, c in enumerate(init_statuses):
        restarts += c.get("restartCount", 0)
        state = c.get("state") or {}
        if "terminated" in state and state["terminated"].get("exitCode", 0) == 0:
            continue
        if "terminated" in state:
            t = state["terminated"]
            reason = "Init:" + (t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}"))
        elif "waiting" in state and (state["waiting"].get("reason") or "") not in ("", "PodInitializing"):
            reason = "Init:" + state["waiting"]["reason"]
        else:
            reason = f"Init:{i}/{len(spec.get('initContainers') or [])}"
        initializing = True
        break
    if not initializing:
        has_running = False
        for c in reversed(status.get("containerStatuses") or []):
            restarts += c.get("restartCount", 0)
            last = ((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt")
            if last and (not last_restart or last > last_restart):
                last_restart = last
            state = c.get("state") or {}
            if (state.get("waiting") or {}).get("reason"):
                reason = state["waiting"]["reason"]
            elif "terminated" in state:
                t = state["terminated"]
                reason = t.get("reason") or (f"Signal:{t['signal']}" if t.get("signal") else f"ExitCode:{t.get('exitCode')}")
            elif "running" in state and c.get("ready"):
                has_running = True
        if reason == "Completed" and has_running:
            ready = any(x.get("type") == "Ready" and x.get("status") == "True" for x in status.get("conditions") or [])
            reason = "Running" if ready else "NotReady"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    return reason, restarts, last_restart


def _pod_row(o: dict) -> list:
    status, spec = o.get("status") or {}, o.get("spec") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    reason, restarts, last = _pod_status(o)
    restart_cell = f"{restarts} ({_since(last)} ago)" if last else str(restarts)
    gates = spec.get("readinessGates") or []
    conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    gates_cell = (f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
                  if gates else "<none>")
    return [o["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}", reason, restart_cell, _age(o),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>",
            status.get("nominatedNodeName") or "<none>", gates_cell]


def _deployment_row(o: dict) -> list:
    st = o.get("status") or {}
    replicas = (o.get("spec") or {}).get("replicas", 1)
    return [o["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{replicas}", st.get("updatedReplicas", 0),
            st.get("availableReplicas", 0), _age(o), *_wide_images(o), _selector_text((o.get("spec") or {}).get("selector"))]


def _statefulset_row(o: dict) -> list:
    st = o.get("status") or {}
    return [o["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{(o.get('spec') or {}).get('replicas', 1)}",
            _age(o), *_wide_images(o)]


def _replicaset_row(o: dict) -> list:
    st = o.get("status") or {}
    return [o["metadata"]["name"], (o.get("spec") or {}).get("replicas", 1), st.get("replicas", 0),
            st.get("readyReplicas", 0), _age(o), *_wide_images(o), _selector_text((o.get("spec") or {}).get("selector"))]


def _service_row(o: dict) -> list:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    typ = spec.get("type") or "ClusterIP"
    if typ == "ExternalName":
        external = spec.get("externalName") or "<none>"
    elif typ == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") or "" for i in (st.get("loadBalancer") or {}).get("ingress") or []]
        external = ",".join(x for x in ingress + list(spec.get("externalIPs") or []) if x) or "<pending>"
    else:
        external = _or_none(spec.get("externalIPs") or [])
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        ports.append(f"{p['port']}:{p['nodePort']}/{proto}" if p.get("nodePort") else f"{p['port']}/{proto}")
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [o["metadata"]["name"], typ, spec.get("clusterIP") or "<none>", external, _or_none(ports), _age(o), selector]


def _node_row(o: dict) -> list:
    st, spec = o.get("status") or {}, o.get("spec") or {}
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = {"True": "Ready", "False": "NotReady"}.get(conds.get("Ready"), "Unknown")
    if spec.get("unschedulable"):
        status += ",SchedulingDisabled"
    roles = set()
    for k, v in (o["metadata"].get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/"):]:
            roles.add(k[len("node-role.kubernetes.io/"):])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = st.get("nodeInfo") or {}
    addrs = st.get("addresses") or []
    internal = [a["address"] for a in addrs if a.get("type") == "InternalIP"]
    external = [a["address"] for a in addrs if a.get("type") == "ExternalIP"]
    return [o["metadata"]["name"], status, ",".join(sorted(roles)) or "<none>", _age(o),
            info.get("kubeletVersion", ""), internal[0] if internal else "<none>",
            external[0] if external else "<none>", info.get("osImage") or "<unknown>",
            info.get("kernelVersion") or "<unknown>", info.get("containerRuntimeVersion") or "<unknown>"]


def _namespace_row(o: dict) -> list:
    return [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""), _age(o)]


def _configmap_row(o: dict) -> list:
    return [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o)]


def _secret_row(o: dict) -> list:
    return [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), _age(o)]


def _pvc_row(o: dict) -> list:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    phase = st.get("phase", "")
    if o["metadata"].get("deletionTimestamp"):
        phase = "Terminating"
    bound = bool(spec.get("volumeName"))
    capacity = (st.get("capacity") or {}).get("storage", "") if bound else ""
    modes = "" if not bound else ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                                           "ReadWriteOncePod": "RWOP"}.get(m, m) for m in st.get("accessModes") or [])
    return [o["metadata"]["name"], phase, spec.get("volumeName", ""), capacity, modes,
            spec.get("storageClassName") or "", spec.get("volumeAttributesClassName") or "<unset>", _age(o),
            spec.get("volumeMode") or "<unset>"]


def _job_row(o: dict) -> list:
    spec, st = o.get("spec") or {}, o.get("status") or {}
    completions = spec.get("completions")
    parallelism = spec.get("parallelism", 1)
    if completions is not None:
        comp = f"{st.get('succeeded', 0)}/{completions}"
    else:
        comp = f"{st.get('succeeded', 0)}/1 of {parallelism}" if parallelism > 1 else f"{st.get('succeeded', 0)}/1"
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    status = next((t for t in ("Failed", "Complete", "FailureTarget", "SuccessCriteriaMet", "Suspended")
                   if conds.get(t) == "True"), "Running")
    start, end = st.get("startTime"), st.get("completionTime")
    if not start:
        duration = ""
    elif end:
        duration = human_duration((_parse(end) - _parse(start)).total_seconds())
    else:
        duration = _since(start)
    return [o["metadata"]["name"], status, comp, duration, _age(o), *_wide_images(o),
            _selector_text(spec.get("selector"))]


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


_W = 1  # priority of the columns only -o wide shows
_PRINTERS: dict[tuple[str, str], tuple[list[dict], Callable[[dict], list]]] = {
    ("", "pods"): ([_NAME, _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
                    _col("Status", description="The aggregate status of the containers in this pod."),
                    _col("Restarts", description="The number of times the containers in this pod have been restarted "
                                                 "and when the last container in this pod has restarted."),
                    _AGE, _col("IP", priority=_W, description="podIP address allocated to the pod."),
                    _col("Node", priority=_W, description="NodeName indicates in which node this pod is scheduled."),
                    _col("Nominated Node", priority=_W, description="nominatedNodeName is set only when this pod "
                                                                    "preempts other pods on the node."),
                    _col("Readiness Gates", priority=_W, description="If specified, all readiness gates will be "
                                                                     "evaluated for pod readiness.")], _pod_row),
    ("apps", "deployments"): ([_NAME, _col("Ready", description="Number of the pod with ready state"),
                               _col("Up-to-date", "integer", "Total number of non-terminated pods targeted by this "
                                                             "deployment that have the desired template spec."),
                               _col("Available", "integer", "Total number of available pods (ready for at least "
                                                            "minReadySeconds) targeted by this deployment."),
                               _AGE, _col("Containers", priority=_W, description="Names of each container in the template."),
                               _col("Images", priority=_W, description="Images referenced by each container in the template."),
                               _col("Selector", priority=_W, description="Label selector for pods. Existing "
                                                                         "ReplicaSets whose pods are selected by this "
                                                                         "will be the ones affected by this deployment.")],
                              _deployment_row),
    ("apps", "statefulsets"): ([_NAME, _col("Ready", description="Number of the pod with ready state"), _AGE,
                                _col("Containers", priority=_W, description="Names of each container in the template."),
                                _col("Images", priority=_W, description="Images referenced by each container in the template.")],
                               _statefulset_row),
    ("apps", "replicasets"): ([_NAME, _col("Desired", "integer", "Replicas is the number of desired replicas."),
                               _col("Current", "integer", "Replicas is the most recently observed number of replicas."),
                               _col("Ready", "integer", "The number of ready replicas for this replica set."), _AGE,
                               _col("Containers", priority=_W, description="Names of each container in the template."),
                               _col("Images", priority=_W, description="Images referenced by each container in the template."),
                               _col("Selector", priority=_W, description="Selector is a label query over pods that "
                                                                         "should match the replica count.")],
                              _replicaset_row),
    ("", "services"): ([_NAME, _col("Type", description="type determines how the Service is exposed."),
                        _col("Cluster-IP", description="clusterIP is the IP address of the service."),
                        _col("External-IP", description="List of IP addresses for which nodes in the cluster will "
                                                        "also accept traffic for this service."),
                        _col("Port(s)", description="The list of ports that are exposed by this service."), _AGE,
                        _col("Selector", priority=_W, description="Route service traffic to pods with label keys "
                                                                  "and values matching this selector.")], _service_row),
    ("", "nodes"): ([_NAME, _col("Status", description="The status of the node"),
                     _col("Roles", description="The roles of the node"), _AGE,
                     _col("Version", description="Kubelet Version reported by the node."),
                     _col("Internal-IP", priority=_W, description="List of addresses reachable to the node."),
                     _col("External-IP", priority=_W, description="List of addresses reachable to the node."),
                     _col("OS-Image", priority=_W, description="OS Image reported by the node from /etc/os-release "
                                                               "(e.g. Debian GNU/Linux 7 (wheezy))."),
                     _col("Kernel-Version", priority=_W, description="Kernel Version reported by the node from "
                                                                     "'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
                     _col("Container-Runtime", priority=_W, description="ContainerRuntime Version reported by the "
                                                                        "node through runtime remote API (e.g. "
                                                                        "containerd://1.4.2).")], _node_row),
    ("", "namespaces"): ([_NAME, _col("Status", description="The status of the namespace"), _AGE], _namespace_row),
    ("", "configmaps"): ([_NAME, _col("Data", "integer", "Data contains the configuration data."), _AGE], _configmap_row),
    ("", "secrets"): ([_NAME, _col("Type", description="Used to facilitate programmatic handling of secret data."),
                       _col("Data", "integer", "Data contains the secret data."), _AGE], _secret_row),
    ("", "persistentvolumeclaims"): ([_NAME, _col("Status", description="Phase represents the current phase of "
                                                                        "PersistentVolumeClaim."),
                                      _col("Volume", description="VolumeName is the binding reference to the "
                                                                 "PersistentVolume backing this claim."),
                                      _col("Capacity", description="Capacity represents the actual resources of the "
                                                                   "underlying volume."),
                                      _col("Access Modes", description="AccessModes contains the desired access modes "
                                                                       "the volume should have."),
                                      _col("StorageClass", description="StorageClassName is the name of the StorageClass "
                                                                       "required by the claim."),
                                      _col("VolumeAttributesClass", description="VolumeAttributesClassName may be "
                                                                                "used to set the VolumeAttributesClass "
                                                                                "used by this claim."),
                                      _AGE, _col("VolumeMode", priority=_W, description="volumeMode defines what type of "
                                                                                        "volume is required by the claim.")],
                                     _pvc_row),
    ("batch", "jobs"): ([_NAME, _col("Status", description="Status of the job."),
                         _col("Completions", description="The completion status of the job."),
                         _col("Duration", description="Time required to complete the job."), _AGE,
                         _col("Containers", priority=_W, description="Names of each container in the template."),
                         _col("Images", priority=_W, description="Images referenced by each container in the template."),
                         _col("Selector", priority=_W, description="A label query over pods that should match the "
                                                                   "pod count.")], _job_row),
}

_DEFAULT = ([_NAME, _col("Created At", "date", _CREATED_DOC)],
            lambda o: [o["metadata"]["name"], o["metadata"].get("creationTimestamp")])


# -- custom resources: apiextensions-apiserver pkg/registry/customresource/tableconvertor ---------
_SEGMENT = re.compile(r"\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def _json_path(obj: Any, path: str) -> Any:
    """The first result of a simple JSONPath (``.a.b``, ``.a[0]``, ``.a[?(@.k=="v")].b``), or None."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    pos, cur = 0, obj
    while pos < len(path):
        m = _SEGMENT.match(path, pos)
        if not m:
            return None
        pos = m.end()
        key, index, fkey, fval = m.groups()
        if key is not None:
            cur = cur.get(key) if isinstance(cur, dict) else None
        elif index is not None:
            cur = cur[int(index)] if isinstance(cur, list) and int(index) < len(cur) else None
        else:
            cur = next((e for e in cur if isinstance(e, dict) and str(_json_path(e, "." + fkey)) == fval), None) \
                if isinstance(cur, list) else None
        if cur is None:
            return None
    return cur


def _cell(typ: str, value: Any) -> Any:
    if value is None:
        return None
    if typ == "integer":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if typ == "number":
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if typ == "boolean":
        return value if isinstance(value, bool) else None
    if typ == "date":
        return _since(value) if isinstance(value, str) else None
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def crd_printer(columns: list[dict] | None):
    """Columns and row function for a CRD version (its additionalPrinterColumns, else Age)."""
    columns = columns or [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    defs = [_NAME] + [_col(c["name"], c.get("type", "string"), c.get("description", ""), c.get("priority", 0),
                           c.get("format", "")) for c in columns]

    def row(o: dict) -> list:
        return [o["metadata"]["name"]] + [_cell(c.get("type", "string"), _json_path(o, c["jsonPath"])) for c in columns]
    return defs, row


# -- the Table ------------------------------------------------------------------------------------
def _partial(o: dict, table_version: str) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{table_version}", "metadata": o["metadata"]}


def to_table(items: list[dict], list_meta: dict, gr: tuple[str, str], query, table_version: str,
             printer=None) -> dict:
    """A Table of ``items`` (already-filtered objects of resource ``gr``), as the real server's
    ``asTable`` builds it: rows carry the object, its metadata only (the default), or nothing,
    by ``includeObject``."""
    include = query.get("includeObject") or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise bad_request(f'unrecognized includeObject value: "{include}"')
    columns, row = printer or _PRINTERS.get(gr, _DEFAULT)
    rows = []
    for o in items:
        r: dict[str, Any] = {"cells": row(o)}
        if include == "Object":
            r["object"] = o
        elif include == "Metadata":
            r["object"] = _partial(o, table_version)
        else:
            r["object"] = None
        if gr == ("", "pods") and (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            r["conditions"] = [{"type": "Completed", "status": "True",
                                "reason": (o.get("status") or {}).get("phase"),
                                "message": "The pod has completed successfully." if o["status"]["phase"] == "Succeeded"
                                else "The pod failed."}]
        rows.append(r)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{table_version}", "metadata": list_meta,
            "columnDefinitions": [] if query.get("noHeaders") in ("true", "1") else columns, "rows": rows}
