"""Server-side apply and the managedFields bookkeeping of every write.

Field ownership is tracked as sets of paths in the fieldsV1 vocabulary (``f:spec``,
``k:{"port":80,"protocol":"TCP"}`` for an item of a list-map, ``v:"x"`` for a set member). An
Apply computes the fields of the applied configuration, reports conflicts with fields other
managers own and would see changed (409 unless ``force``), removes fields this manager applied
before and omits now (unless someone else still owns them), and merges as structured-merge-diff
does with the kind's schema (``openapi.Schema``): lists by ``x-kubernetes-list-type`` (``map``
item by item on ``x-kubernetes-list-map-keys``, ``set`` by value, ``atomic`` -- also any list
the schema says nothing about, as in most CRDs -- replaced whole), maps granular unless
``x-kubernetes-map-type: atomic``.

SIMPLIFICATIONS against the real structured-merge-diff: metadata fields tracked are labels,
annotations, finalizers and ownerReferences; a key field left out defaults only for
``protocol`` ("TCP"). Pure functions: no store, no HTTP.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

from .store import now_rfc3339

if TYPE_CHECKING:  # pragma: no cover
    from .openapi import Schema

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


# a key field the item leaves out takes the schema's default (structured-merge-diff reads it from
# the OpenAPI models; kubernetes-validate's copy has no defaults, and protocol is the only one)
_KEY_DEFAULTS = {"protocol": "TCP"}


def _sub(schema: "Schema | None", key: str) -> "Schema | None":
    return schema.field(key) if schema is not None else None


def _list_shape(schema: "Schema | None") -> tuple[str, list[str]]:
    """("map", keys) / ("set", []) / ("atomic", []): a list nobody declared is atomic."""
    if schema is None:
        return "atomic", []
    kind = schema.list_type()
    if kind == "map" and schema.list_map_keys():
        return "map", schema.list_map_keys()
    return ("set", []) if kind == "set" else ("atomic", [])


def _item_key(item: Any, keys: list[str]) -> dict | None:
    if not isinstance(item, dict):
        return None
    return {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in sorted(keys)}


def _key_token(item: dict, keys: list[str]) -> str:
    return "k:" + json.dumps(_item_key(item, keys), separators=(",", ":"))


def _value_token(item: Any) -> str:
    return "v:" + json.dumps(item, separators=(",", ":"))


def _atomic_map(schema: "Schema | None") -> bool:
    return schema is not None and schema.map_type() == "atomic"


def _walk(value: Any, schema: "Schema | None", path: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and value and not _atomic_map(schema):
        for k, v in value.items():
            _walk(v, _sub(schema, k), path + ("f:" + k,), out)
        return
    if isinstance(value, list) and value:
        shape, keys = _list_shape(schema)
        if shape == "map":
            items = schema.items() if schema is not None else None
            for item in value:
                ip = path + (_key_token(item, keys),)
                out.add(ip)
                for k, v in (item or {}).items():
                    _walk(v, _sub(items, k), ip + ("f:" + k,), out)
            return
        if shape == "set":
            out.update(path + (_value_token(item),) for item in value)
            return
    out.add(path)


def field_set(obj: dict, include_status: bool, schema: "Schema | None" = None) -> set[Path]:
    """The fields an object sets, as ownership paths."""
    out: set[Path] = set()
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if k == "status" and not include_status:
            continue
        if k == "metadata":
            meta_schema = _sub(schema, "metadata")
            for mk in _TRACKED_META:
                if mk in (v or {}):
                    _walk(v[mk], _sub(meta_schema, mk), ("f:metadata", "f:" + mk), out)
            continue
        _walk(v, _sub(schema, k), ("f:" + k,), out)
    return out


def _find(items: list, tok: str) -> int:
    if tok.startswith("v:"):
        want = json.loads(tok[2:])
        return next((n for n, i in enumerate(items) if i == want), -1)
    want = json.loads(tok[2:])
    keys = list(want)
    return next((n for n, i in enumerate(items) if _item_key(i, keys) == want), -1)


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for tok in path:
        if tok.startswith("f:"):
            if not isinstance(cur, dict) or tok[2:] not in cur:
                return _MISSING
            cur = cur[tok[2:]]
        elif tok[:2] in ("k:", "v:"):
            at = _find(cur, tok) if isinstance(cur, list) else -1
            if at < 0:
                return _MISSING
            cur = cur[at]
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
    elif last[:2] in ("k:", "v:") and isinstance(parent, list):
        at = _find(parent, last)
        if at >= 0:
            del parent[at]


def path_string(path: Path) -> str:
    out = ""
    for tok in path:
        if tok.startswith("f:"):
            out += "." + tok[2:]
        elif tok.startswith("k:"):
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(tok[2:]).items()) + "]"
        elif tok.startswith("v:"):
            out += "[=" + tok[2:] + "]"
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


def apply_merge(live: Any, applied: Any, schema: "Schema | None" = None) -> Any:
    """Merge an applied configuration into the live object: granular maps deep, list-maps by
    their keys, sets by value; atomic lists and maps (and lists no schema declares) replaced."""
    if isinstance(applied, dict) and isinstance(live, dict) and not _atomic_map(schema):
        out = dict(live)
        for k, v in applied.items():
            out[k] = apply_merge(live[k], v, _sub(schema, k)) if k in live else copy.deepcopy(v)
        return out
    if isinstance(applied, list) and isinstance(live, list):
        shape, keys = _list_shape(schema)
        if shape == "map":
            items = schema.items() if schema is not None else None
            out = [copy.deepcopy(i) for i in live]
            for item in applied:
                at = _find(out, _key_token(item, keys))
                if at >= 0:
                    out[at] = apply_merge(out[at], item, items)
                else:
                    out.append(copy.deepcopy(item))
            return out
        if shape == "set":
            return copy.deepcopy(live) + [copy.deepcopy(i) for i in applied if i not in live]
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
                  subresource: str = "", include_status: bool = True, schema: "Schema | None" = None) -> None:
    """Give ``manager`` (operation Update) the fields this write changed; others lose them."""
    entries = _entries(old)
    sets = {_ident(e): from_fields_v1(e.get("fieldsV1") or {}) for e in entries}
    new_fields = field_set(new, include_status, schema)
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


def server_side_apply(live: dict | None, applied: dict, manager: str, force: bool, api_version: str,
                      subresource: str = "", include_status: bool = False, schema: "Schema | None" = None) -> dict:
    """The object after ``manager`` applies ``applied`` to ``live`` (None: create). Raises ApplyConflict."""
    entries = _entries(live)
    sets = {_ident(e): from_fields_v1(e.get("fieldsV1") or {}) for e in entries}
    me = (manager, "Apply", subresource)
    new_set = field_set(applied, include_status, schema)
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
    for p in sorted(previously - new_set, key=len):  # an item before its fields: its key must still match
        if p not in others:
            remove_path(base, p)

    merged = apply_merge(base, {k: v for k, v in applied.items() if k != "metadata"}, schema)
    meta = merged.setdefault("metadata", {})
    ameta = applied.get("metadata") or {}
    for k in ("name", "namespace", "generateName"):
        if k in ameta and k not in meta:
            meta[k] = ameta[k]
    for k in _TRACKED_META:
        if k in ameta:
            meta[k] = apply_merge(meta.get(k), ameta[k], _sub(_sub(schema, "metadata"), k))
    merged["apiVersion"] = applied.get("apiVersion", merged.get("apiVersion"))
    merged["kind"] = applied.get("kind", merged.get("kind"))

    present = field_set(merged, True, schema)
    for ident in list(sets):
        sets[ident] &= present
    sets[me] = new_set & present | (new_set & field_set(merged, include_status, schema))
    _finish(merged, entries, sets, {me}, api_version)
    return merged
