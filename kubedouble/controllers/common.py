"""Small helpers the built-in controllers share: owner references, pod templates, readiness."""

from __future__ import annotations

import copy
import hashlib
import json

from ..store import random_suffix

HASH_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def owner_ref(obj: dict) -> dict:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def owned_by(obj: dict, owner: dict) -> bool:
    uid = owner["metadata"]["uid"]
    return any(r.get("uid") == uid for r in obj["metadata"].get("ownerReferences") or [])


def controller_of(obj: dict) -> dict | None:
    for r in obj["metadata"].get("ownerReferences") or []:
        if r.get("controller"):
            return r
    return None


def template_hash(template: dict, length: int = 10) -> str:
    """A stable short hash in the alphabet the real pod-template-hash uses."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    n = int.from_bytes(digest[:8], "big")
    out = ""
    for _ in range(length):
        n, r = divmod(n, len(HASH_ALPHABET))
        out += HASH_ALPHABET[r]
    return out


def pod_from_template(template: dict, namespace: str, owner: dict, *, name: str | None = None,
                      generate_prefix: str | None = None, extra_labels: dict | None = None) -> dict:
    tmeta = template.get("metadata") or {}
    meta = {"namespace": namespace,
            "labels": {**(tmeta.get("labels") or {}), **(extra_labels or {})},
            "ownerReferences": [owner_ref(owner)]}
    if tmeta.get("annotations"):
        meta["annotations"] = copy.deepcopy(tmeta["annotations"])
    meta["name"] = name or f"{generate_prefix}{random_suffix()}"
    if generate_prefix:
        meta["generateName"] = generate_prefix
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}


def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_ready(pod: dict) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def set_condition(conditions: list, type_: str, status: str, reason: str = "", message: str = "",
                  now: str = "") -> list:
    """Replace the condition of that type; keeps lastTransitionTime when the status is unchanged."""
    out = [c for c in conditions or [] if c.get("type") != type_]
    prev = next((c for c in conditions or [] if c.get("type") == type_), None)
    cond = {"type": type_, "status": status}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    cond["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == status and prev.get("lastTransitionTime") else now
    if prev and "lastUpdateTime" in prev or type_ in ("Available", "Progressing"):
        cond["lastUpdateTime"] = now
    if prev and {k: v for k, v in prev.items() if k not in ("lastUpdateTime",)} == \
            {k: v for k, v in cond.items() if k not in ("lastUpdateTime",)}:
        cond = prev
    out.append(cond)
    return sorted(out, key=lambda c: c["type"])


def has_ready_endpoints(double, namespace: str, service: str) -> bool:
    """Whether the Service has a Ready endpoint (what kube-proxy forwards to)."""
    ep = double.get("endpoints", namespace, service) or {}
    return any(s.get("addresses") for s in ep.get("subsets") or [])


def reset(sock) -> None:
    """Close a connection with a TCP reset, as kube-proxy answers a Service without endpoints."""
    import socket
    import struct

    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
