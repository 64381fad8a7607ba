"""The three classic patch formats, as pure functions over JSON-like values.

- JSON merge patch (RFC 7386): maps merge, ``null`` deletes, everything else replaces.
- JSON patch (RFC 6902): add/remove/replace/move/copy/test with JSON pointers; a failing
  ``test`` or a missing path raises ``PatchError``.
- Strategic merge patch, SIMPLIFIED: the real server reads per-field patch strategies and
  merge keys from the Go types. Here every list whose items are all objects with a ``name``
  key (containers, initContainers, env, volumes, named ports) is merged item by item on
  ``name``; every other list is replaced. ``$patch: delete`` inside such an
  item removes it, ``$patch: replace`` on a map replaces it, ``null`` deletes a key. Lists
  the real server merges on other keys (volumeMounts by mountPath, ports by containerPort)
  are replaced here.

Server-side apply lives in ``apply.py``. Nothing here touches the store or HTTP.
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(Exception):
    """The patch cannot be applied; ``code`` is the HTTP status the server answers with."""

    def __init__(self, message: str, code: int = 422):
        super().__init__(message)
        self.code = code


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


# -- RFC 6902 -----------------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with /")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve_parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError(f"jsonpatch: path {path!r} does not exist (missing {p!r})")
    return cur, parts[-1]


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for p in _pointer(path):
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.isdigit() and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise PatchError(f"jsonpatch: path {path!r} does not exist")
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _resolve_parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise PatchError(f"jsonpatch: index {last!r} out of range in {path!r}")
    else:
        raise PatchError(f"jsonpatch: cannot add to {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent, last = _resolve_parent(doc, parts, path)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"jsonpatch: path {path!r} does not exist")


def json_patch(doc: Any, ops: list) -> Any:
    if not isinstance(ops, list):
        raise PatchError("json patch body must be a list of operations", 400)
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"jsonpatch: operation {op!r} lacks op or path", 400)
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            parts = _pointer(path)
            if not parts:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent, last = _resolve_parent(doc, parts, path)
                if isinstance(parent, list):
                    parent[int(last)] = copy.deepcopy(op.get("value"))
                else:
                    parent[last] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            actual = _get(doc, path)
            if actual != op.get("value"):
                raise PatchError(f"testing value {path} failed: expected {op.get('value')!r}, got {actual!r}")
        else:
            raise PatchError(f"jsonpatch: unknown op {kind!r}", 400)
    return doc


# -- strategic merge (simplified) ---------------------------------------------------------

def is_named_list(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(i, dict) and "name" in i for i in value))


def strategic_merge(target: Any, patch: Any) -> Any:
    if isinstance(patch, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        if patch.get("$patch") == "delete":
            return None
        result = dict(target) if isinstance(target, dict) else {}
        for k, v in patch.items():
            if k.startswith("$"):
                continue
            if v is None:
                result.pop(k, None)
            elif is_named_list(v) and isinstance(result.get(k), list):
                result[k] = _merge_named(result[k], v)
            else:
                result[k] = strategic_merge(result.get(k), v)
        return result
    return copy.deepcopy(patch)


def _merge_named(live: list, patch: list) -> list:
    out = [copy.deepcopy(i) for i in live]
    index = {i.get("name"): n for n, i in enumerate(out) if isinstance(i, dict)}
    for item in patch:
        name = item["name"]
        if item.get("$patch") == "delete":
            out = [i for i in out if not (isinstance(i, dict) and i.get("name") == name)]
            index = {i.get("name"): n for n, i in enumerate(out) if isinstance(i, dict)}
            continue
        if name in index:
            out[index[name]] = strategic_merge(out[index[name]], item)
        else:
            out.append(strategic_merge({}, item))
            index[name] = len(out) - 1
    return out
