"""Label and field selectors as the list and watch endpoints accept them.

Label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``,
comma-separated (all must hold). Field selectors: ``path=value``/``path==value``/``path!=value``
over a fixed set of supported paths per resource, as the real server refuses others (400).
Also ``match_label_selector_obj`` for LabelSelector objects (matchLabels/matchExpressions) used
by controllers. Pure functions; no store access.
"""

from __future__ import annotations

import re
from typing import Callable

from .status import bad_request

Predicate = Callable[[dict], bool]

_REQ = re.compile(
    r"\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9._/-]+)\s*"
    r"(?:(?P<op>==|=|!=|\s+in\s+|\s+notin\s+)\s*(?P<val>\([^)]*\)|[A-Za-z0-9._-]*))?\s*$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_label_selector(text: str | None) -> Callable[[dict], bool]:
    """A predicate over a labels dict."""
    if not text or not text.strip():
        return lambda labels: True
    checks: list[Callable[[dict], bool]] = []
    for raw in _split_top(text):
        m = _REQ.match(raw)
        if not m:
            raise bad_request(f'unable to parse requirement: found \'{raw.strip()}\', expected: identifier')
        key, op, val, neg = m.group("key"), (m.group("op") or "").strip(), m.group("val"), m.group("neg")
        if neg:
            if op:
                raise bad_request(f"unable to parse requirement: {raw.strip()}")
            checks.append(lambda lb, k=key: k not in lb)
        elif not op:
            checks.append(lambda lb, k=key: k in lb)
        elif op in ("=", "=="):
            checks.append(lambda lb, k=key, v=val: lb.get(k) == v)
        elif op == "!=":
            checks.append(lambda lb, k=key, v=val: lb.get(k) != v)
        else:
            if not val or not val.startswith("("):
                raise bad_request(f"unable to parse requirement: {raw.strip()}: expected '('")
            values = {v.strip() for v in val[1:-1].split(",") if v.strip()}
            if op == "in":
                checks.append(lambda lb, k=key, vs=values: lb.get(k) in vs)
            else:
                checks.append(lambda lb, k=key, vs=values: lb.get(k) not in vs)
    return lambda labels: all(c(labels) for c in checks)


def match_label_selector_obj(selector: dict | None, labels: dict) -> bool:
    """Match a LabelSelector object. An empty selector matches everything (as for PDBs, not Services)."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), set(expr.get("values") or [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def match_map_selector(selector: dict | None, labels: dict) -> bool:
    """Service/ReplicationController style selector: a plain map; empty selects nothing."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in selector.items())


# The fields each resource lets you select on, beyond metadata.name/metadata.namespace.
_FIELDS: dict[str, dict[str, Callable[[dict], str]]] = {
    "pods": {
        "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
        "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
        "spec.restartPolicy": lambda o: (o.get("spec") or {}).get("restartPolicy", ""),
        "spec.schedulerName": lambda o: (o.get("spec") or {}).get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: (o.get("spec") or {}).get("serviceAccountName", ""),
        "status.podIP": lambda o: (o.get("status") or {}).get("podIP", ""),
    },
    "events": {
        f"involvedObject.{f}": (lambda o, f=f: str((o.get("involvedObject") or {}).get(f, "")))
        for f in ("name", "kind", "namespace", "uid", "apiVersion", "resourceVersion", "fieldPath")
    } | {"reason": lambda o: o.get("reason", ""), "type": lambda o: o.get("type", ""),
         "source": lambda o: (o.get("source") or {}).get("component", "")},
    "secrets": {"type": lambda o: o.get("type", "")},
    "namespaces": {"status.phase": lambda o: (o.get("status") or {}).get("phase", "")},
    "nodes": {"spec.unschedulable": lambda o: str(bool((o.get("spec") or {}).get("unschedulable"))).lower()},
    "persistentvolumeclaims": {"status.phase": lambda o: (o.get("status") or {}).get("phase", "")},
    "persistentvolumes": {"status.phase": lambda o: (o.get("status") or {}).get("phase", "")},
    "jobs": {"status.successful": lambda o: str((o.get("status") or {}).get("succeeded", 0))},
    "replicasets": {"status.replicas": lambda o: str((o.get("status") or {}).get("replicas", 0))},
}


def parse_field_selector(text: str | None, resource: str, kind: str) -> Predicate:
    if not text or not text.strip():
        return lambda obj: True
    getters = {
        "metadata.name": lambda o: o["metadata"].get("name", ""),
        "metadata.namespace": lambda o: o["metadata"].get("namespace", ""),
    } | _FIELDS.get(resource, {})
    checks = []
    for raw in _split_top(text):
        m = re.match(r"^\s*([A-Za-z0-9._]+)\s*(==|!=|=)\s*(.*?)\s*$", raw)
        if not m:
            raise bad_request(f'invalid selector: \'{text}\'; can\'t understand \'{raw}\'')
        field, op, value = m.groups()
        getter = getters.get(field)
        if getter is None:
            raise bad_request(f'field label not supported: {field}')
        if op == "!=":
            checks.append(lambda o, g=getter, v=value: g(o) != v)
        else:
            checks.append(lambda o, g=getter, v=value: g(o) == v)
    return lambda obj: all(c(obj) for c in checks)


def selector_string(selector: dict | None) -> str:
    """A LabelSelector as ``metav1.LabelSelectorAsSelector(...).String()`` prints it (the ``status.selector``
    of a Scale): requirements sorted by key, ``k=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``."""
    reqs: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in ((selector or {}).get("matchLabels") or {}).items()]
    for e in (selector or {}).get("matchExpressions") or []:
        key, op, values = e.get("key", ""), e.get("operator"), ",".join(sorted(e.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key,
                "DoesNotExist": f"!{key}"}.get(op, key)
        reqs.append((key, text))
    return ",".join(text for _, text in sorted(reqs, key=lambda r: r[0]))
