"""Admission: the checks and allocations the real server makes beyond the OpenAPI schema.

Runs after defaulting and schema validation, before the store write (also for dry runs):
namespaces must exist and not be terminating; Services get a cluster IP and node ports
(a requested node port already taken is 422 ``provided port is already allocated``); a
PersistentVolumeClaim without a class gets the default StorageClass (the DefaultStorageClass
plugin); Job templates need restartPolicy Never/OnFailure; a CRD's name must be <plural>.<group>.
It reads the store but never writes it.
"""

from __future__ import annotations

import ipaddress

from .resources import ResourceType
from .status import (
    ApiError,
    invalid,
    invalid_value,
    not_found,
    required_value,
    unsupported_value,
)
from .store import Store

SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")   # K3s defaults
NODE_PORT_RANGE = (30000, 32767)
DEFAULT_SC_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def default_storage_class(store: Store) -> str | None:
    classes, _ = store.list(("storage.k8s.io", "storageclasses"))
    for sc in classes:
        if (sc["metadata"].get("annotations") or {}).get(DEFAULT_SC_ANNOTATION) == "true":
            return sc["metadata"]["name"]
    return None


def admit(store: Store, rt: ResourceType, obj: dict, old: dict | None) -> None:
    """Check and complete ``obj`` in place; raise ApiError to refuse it."""
    meta = obj["metadata"]
    ns = meta.get("namespace", "")
    if rt.namespaced and old is None:
        nsobj = store.get(("", "namespaces"), "", ns)
        if nsobj is None:
            raise not_found("namespaces", "", ns)
        if (nsobj.get("status") or {}).get("phase") == "Terminating":
            raise ApiError(403, "Forbidden",
                           f'{rt.plural} "{meta.get("name") or meta.get("generateName", "")}" is forbidden: '
                           f"unable to create new content in namespace {ns} because it is being terminated",
                           {"name": meta.get("name", ""), "group": rt.group, "kind": rt.plural,
                            # plugin/pkg/admission/namespace/lifecycle/admission.go adds this cause
                            "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                        "message": f"namespace {ns} is being terminated"}]})
    key = (rt.group, rt.plural)
    if key == ("", "services"):
        _admit_service(store, rt, obj, old)
    elif key == ("", "persistentvolumeclaims") and old is None:
        spec = obj.setdefault("spec", {})
        if spec.get("storageClassName") is None:
            default = default_storage_class(store)
            if default:
                spec["storageClassName"] = default
    elif key == ("batch", "jobs"):
        policy = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("restartPolicy")
        if policy not in ("Never", "OnFailure"):
            raise invalid(rt.kind, rt.group, meta.get("name", ""),
                          [required_value("spec.template.spec.restartPolicy", 'valid values: "OnFailure", "Never"')
                           if policy is None else
                           unsupported_value("spec.template.spec.restartPolicy", policy, ["OnFailure", "Never"])])
    elif key == ("apiextensions.k8s.io", "customresourcedefinitions"):
        spec = obj.get("spec") or {}
        want = f"{(spec.get('names') or {}).get('plural')}.{spec.get('group')}"
        if meta.get("name") != want:
            raise invalid(rt.kind, rt.group, meta.get("name", ""),
                          [invalid_value("metadata.name", meta.get("name"), 'must be spec.names.plural+"."+spec.group')])


def _admit_service(store: Store, rt: ResourceType, obj: dict, old: dict | None) -> None:
    spec = obj.setdefault("spec", {})
    name = obj["metadata"].get("name", "")
    services, _ = store.list(("", "services"))
    mine = (obj["metadata"].get("namespace"), name)
    others = [s for s in services if (s["metadata"].get("namespace"), s["metadata"]["name"]) != mine]
    old_spec = (old or {}).get("spec") or {}
    if spec.get("clusterIP") != "None":
        if old_spec.get("clusterIP") and not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIP"):
            used = {s.get("spec", {}).get("clusterIP") for s in others}
            for host in SERVICE_CIDR.hosts():
                ip = str(host)
                if ip != "10.43.0.1" and ip != "10.43.0.10" and ip not in used:
                    spec["clusterIP"] = ip
                    break
        spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec.get("type") not in ("NodePort", "LoadBalancer"):
        for p in spec.get("ports") or []:
            p.pop("nodePort", None)
        return
    spec.setdefault("externalTrafficPolicy", "Cluster")
    taken = {p.get("nodePort") for s in others for p in (s.get("spec", {}).get("ports") or [])
             if p.get("nodePort")}
    old_ports = {(p.get("name"), p.get("port")): p.get("nodePort") for p in old_spec.get("ports") or []}
    causes = []
    for i, p in enumerate(spec.get("ports") or []):
        want = p.get("nodePort")
        if want:
            if not (NODE_PORT_RANGE[0] <= want <= NODE_PORT_RANGE[1]):
                causes.append(invalid_value(f"spec.ports[{i}].nodePort", want,
                                            f"provided port is not in the valid range. The range of valid ports is "
                                            f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}"))
            elif want in taken:
                causes.append(invalid_value(f"spec.ports[{i}].nodePort", want, "provided port is already allocated"))
            taken.add(want)
            continue
        previous = old_ports.get((p.get("name"), p.get("port")))
        if previous:
            p["nodePort"] = previous
            taken.add(previous)
            continue
        for port in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1):
            if port not in taken:
                p["nodePort"] = port
                taken.add(port)
                break
    if causes:
        raise invalid("Service", "", name, causes)
