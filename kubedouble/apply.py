"""Server-side apply and the managedFields bookkeeping of every write.

Field ownership is tracked as sets of paths in the fieldsV1 vocabulary (``f:spec``,
``k:{"name":"nginx"}`` for an item of a list keyed by name). An Apply computes the fields of
the applied configuration, reports conflicts with fields other managers own and would see
changed (409 unless ``force``), removes fields this manager applied before and omits now
(unless someone else still owns them), merges maps recursively and name-keyed lists item by
item, and replaces everything else (other lists are atomic).

SIMPLIFICATIONS against the real structured-merge-diff: list merge keys are always ``name``
(the real schema also keys ports by containerPort, volumeMounts by mountPath, ...); set-typed
lists (``v:`` entries) are not modelled; metadata fields tracked are labels, annotations,
finalizers and ownerReferences (the latter atomic). Pure functions: no store, no HTTP.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .patch import is_named_list
from .store import now_rfc3339

Path = tuple[str, ...]
_MISSING = object()
_TRACKED_META = ("labels", "annotations", "finalizers", "ownerReferences")


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[str, str]]):
        self.conflicts = conflicts  # (manager, ".spec.replicas")
        super().__init__(conflict_message(conflicts))


def conflict_message(conflicts: list[tuple[str, str]]) -> str:
    n = len(conflicts)
    head = f"Apply failed with {n} conflict{'s' if n != 1 else ''}: "
    if n == 1:
        m, p = conflicts[0]
        return head + f'conflict with "{m}": {p}'
    by_manager: dict[str, list[str]] = {}
    for m, p in conflicts:
        by_manager.setdefault(m, []).append(p)
    parts = []
    for m, paths in by_manager.items():
        if len(paths) == 1:
            parts.append(f'conflict with "{m}": {paths[0]}')
        else:
            parts.append(f'conflicts with "{m}":\n' + "\n".join(f"- {p}" for p in paths))
    return head + "\n".join(parts)


def _key_token(item: dict) -> str:
    return "k:" + json.dumps({"name": item["name"]}, separators=(",", ":"))


def _walk(value: Any, path: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _walk(v, path + ("f:" + k,), out)
    elif is_named_list(value):
        for item in value:
            ip = path + (_key_token(item),)
            out.add(ip)
            for k, v in item.items():
                _walk(v, ip + ("f:" + k,), out)
    else:
        out.add(path)


def field_set(obj: dict, include_status: bool) -> set[Path]:
    """The fields an object sets, as ownership paths."""
    out: set[Path] = set()
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if k == "status" and not include_status:
            continue
        if k == "metadata":
            for mk in _TRACKED_META:
                if mk in (v or {}):
                    if mk == "ownerReferences":
                        out.add(("f:metadata", "f:ownerReferences"))
                    else:
                        _walk(v[mk], ("f:metadata", "f:" + mk), out)
            continue
        _walk(v, ("f:" + k,), out)
    return out


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for tok in path:
        if tok.startswith("f:"):
            if not isinstance(cur, dict) or tok[2:] not in cur:
                return _MISSING
            cur = cur[tok[2:]]
        elif tok.startswith("k:"):
            if not isinstance(cur, list):
                return _MISSING
            name = json.loads(tok[2:])["name"]
            for item in cur:
                if isinstance(item, dict) and item.get("name") == name:
                    cur = item
                    break
            else:
                return _MISSING
        else:
            return _MISSING
    return cur


def remove_path(obj: Any, path: Path) -> None:
    parent = value_at(obj, path[:-1])
    last = path[-1]
    if parent is _MISSING:
        return
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        name = json.loads(last[2:])["name"]
        parent[:] = [i for i in parent if not (isinstance(i, dict) and i.get("name") == name)]


def path_string(path: Path) -> str:
    out = ""
    for tok in path:
        if tok.startswith("f:"):
            out += "." + tok[2:]
        elif tok.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(tok[2:]).items()) + "]"
    return out


def to_fields_v1(paths: set[Path]) -> dict:
    root: dict = {}
    for p in sorted(paths):
        node = root
        for tok in p:
            node = node.setdefault(tok, {})
    # A path that is both owned and a parent of owned paths carries "." (the item itself).
    for p in paths:
        node = root
        for tok in p:
            node = node[tok]
        if node and "." not in node:
            node["."] = {}
    return root


def from_fields_v1(tree: dict, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for tok, sub in (tree or {}).items():
        if tok == ".":
            out.add(prefix)
            continue
        p = prefix + (tok,)
        if not sub:
            out.add(p)
        else:
            out |= from_fields_v1(sub, p)
    return out


def apply_merge(live: Any, applied: Any) -> Any:
    """Merge an applied configuration into the live object: maps deep, name-keyed lists by item."""
    if isinstance(applied, dict) and isinstance(live, dict):
        out = dict(live)
        for k, v in applied.items():
            out[k] = apply_merge(live.get(k), v) if k in live else copy.deepcopy(v)
        return out
    if is_named_list(applied) and isinstance(live, list) and all(isinstance(i, dict) for i in live):
        out = [copy.deepcopy(i) for i in live]
        index = {i.get("name"): n for n, i in enumerate(out)}
        for item in applied:
            if item["name"] in index:
                out[index[item["name"]]] = apply_merge(out[index[item["name"]]], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(applied)


# -- managedFields entries -------------------------------------------------------------------

def _entries(obj: dict | None) -> list[dict]:
    return copy.deepcopy((obj or {}).get("metadata", {}).get("managedFields") or [])


def _ident(e: dict) -> tuple[str, str, str]:
    return (e.get("manager", ""), e.get("operation", ""), e.get("subresource", ""))


def _finish(obj: dict, entries: list[dict], sets: dict[tuple, set[Path]], touched: set[tuple],
            api_version: str) -> None:
    out = []
    by_ident = {_ident(e): e for e in entries}
    for ident, paths in sets.items():
        if not paths:
            continue
        e = by_ident.get(ident) or {"manager": ident[0], "operation": ident[1]}
        if ident in touched or "time" not in e:
            e["time"] = now_rfc3339()
            e["apiVersion"] = api_version
        e["fieldsType"] = "FieldsV1"
        e["fieldsV1"] = to_fields_v1(paths)
        if ident[2]:
            e["subresource"] = ident[2]
        out.append(e)
    if out:
        obj["metadata"]["managedFields"] = out
    else:
        obj["metadata"].pop("managedFields", None)


def record_update(old: dict | None, new: dict, manager: str, api_version: str,
                  subresource: str = "", include_status: bool = True) -> None:
    """Give ``manager`` (operation Update) the fields this write changed; others lose them."""
    entries = _entries(old)
    sets = {_ident(e): from_fields_v1(e.get("fieldsV1") or {}) for e in entries}
    new_fields = field_set(new, include_status)
    if old is None:
        changed = new_fields
    else:
        changed = {p for p in new_fields if value_at(old, p) != value_at(new, p)}
    me = (manager, "Update", subresource)
    for ident in list(sets):
        sets[ident] &= new_fields
        if ident != me:
            sets[ident] -= changed
    sets[me] = (sets.get(me, set()) | changed) & new_fields
    touched = {me} if changed else set()
    _finish(new, entries, sets, touched, api_version)


def server_side_apply(live: dict | None, applied: dict, manager: str, force: bool,
                      api_version: str, subresource: str = "", include_status: bool = False) -> dict:
    """The object after ``manager`` applies ``applied`` to ``live`` (None: create). Raises ApplyConflict."""
    entries = _entries(live)
    sets = {_ident(e): from_fields_v1(e.get("fieldsV1") or {}) for e in entries}
    me = (manager, "Apply", subresource)
    new_set = field_set(applied, include_status)
    base = copy.deepcopy(live) if live is not None else {}

    conflicts: list[tuple[str, str]] = []
    conflicting: dict[tuple, set[Path]] = {}
    if live is not None:
        for ident, owned in sets.items():
            if ident == me:
                continue
            for p in sorted(new_set & owned):
                # a keyed item's own marker is not a value: its fields are compared one by one
                if p[-1].startswith("k:"):
                    continue
                if value_at(applied, p) != value_at(live, p):
                    conflicts.append((ident[0], path_string(p)))
                    conflicting.setdefault(ident, set()).add(p)
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for ident, paths in conflicting.items():
        sets[ident] -= paths

    previously = sets.get(me, set())
    others = set().union(*(s for i, s in sets.items() if i != me)) if sets else set()
    for p in sorted(previously - new_set, key=len, reverse=True):
        if p not in others:
            remove_path(base, p)

    merged = apply_merge(base, {k: v for k, v in applied.items() if k != "metadata"})
    meta = merged.setdefault("metadata", {})
    ameta = applied.get("metadata") or {}
    for k in ("name", "namespace", "generateName"):
        if k in ameta and k not in meta:
            meta[k] = ameta[k]
    for k in _TRACKED_META:
        if k in ameta:
            meta[k] = apply_merge(meta.get(k), ameta[k]) if k in ("labels", "annotations") else copy.deepcopy(ameta[k])
    merged["apiVersion"] = applied.get("apiVersion", merged.get("apiVersion"))
    merged["kind"] = applied.get("kind", merged.get("kind"))

    present = field_set(merged, True)
    for ident in list(sets):
        sets[ident] &= present
    sets[me] = new_set & present | (new_set & field_set(merged, include_status))
    _finish(merged, entries, sets, {me}, api_version)
    return merged
