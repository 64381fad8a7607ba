"""The three classic patch formats, as pure functions over JSON-like values.

- JSON merge patch (RFC 7386): maps merge, ``null`` deletes, everything else replaces.
- JSON patch (RFC 6902): add/remove/replace/move/copy/test with JSON pointers; a failing
  ``test`` or a missing path raises ``PatchError``.
- Strategic merge patch: apimachinery's ``strategicpatch.StrategicMergeMapPatch`` as the server
  runs it (MergeParallelList, IgnoreUnmatchedNulls), with the patch strategy and merge key of
  each field read from the kind's schema (``openapi.Schema``: containers by name, ports by
  containerPort, volumeMounts by mountPath, Service ports by port; args, command, tolerations
  replaced), and the directives ``$patch: replace|delete`` (``merge`` is refused as there),
  ``$retainKeys``, ``$deleteFromPrimitiveList/<f>`` and ``$setElementOrder/<f>``, ordering
  merged lists as ``normalizeElementOrder`` does. Without a schema every list is replaced.

Server-side apply lives in ``apply.py``. Nothing here touches the store or HTTP.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .openapi import Schema


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


# -- strategic merge patch (apimachinery pkg/util/strategicpatch/patch.go, server side) -------

_DIRECTIVE, _RETAIN = "$patch", "$retainKeys"
_DELETE_PRIMITIVES, _SET_ORDER = "$deleteFromPrimitiveList/", "$setElementOrder/"


def _kind(value: Any) -> str:
    """The Go type a decoded JSON value has (every number is a float64 there)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def _no_merge_key(item: Any, key: str) -> PatchError:
    return PatchError(f"map: {item} does not contain declared merge key: {key}", 400)


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """removeDirectives: a value taken whole from the patch loses every ``$patch`` item."""
    if isinstance(value, dict):
        if _DIRECTIVE in value:
            return None, False
        out = {}
        for k, v in value.items():
            if v is None:
                continue  # IgnoreUnmatchedNulls: a null with nothing to delete is dropped
            v, keep = _remove_directives(v)
            if keep:
                out[k] = v
        return out, True
    if isinstance(value, list):
        return [v for v, keep in map(_remove_directives, value) if keep], True
    return copy.deepcopy(value), True


def _sub(schema: "Schema | None", key: str) -> "Schema | None":
    return schema.field(key) if schema is not None else None


def _strategy(schema: "Schema | None") -> tuple[bool, str]:
    """(retainKeys, the other strategy) of a field: extractRetainKeysPatchStrategy."""
    strategies = schema.patch_strategies() if schema is not None else []
    retain = "retainKeys" in strategies
    rest = [s for s in strategies if s != "retainKeys"]
    if len(rest) > 1:
        raise PatchError(f"unexpected patch strategy: {strategies}")
    return retain, rest[0] if rest else ""


def strategic_merge(target: Any, patch: Any, schema: "Schema | None" = None) -> Any:
    """Apply a strategic merge patch to ``target`` with the patch metadata of ``schema``."""
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch body must be an object", 400)
    return _merge_map(copy.deepcopy(target) if isinstance(target, dict) else {}, copy.deepcopy(patch), schema)


def _merge_map(original: dict, patch: dict, schema: "Schema | None") -> dict:
    if _DIRECTIVE in patch:
        directive = patch.pop(_DIRECTIVE)
        if directive == "replace":
            return patch
        if directive == "delete":
            return {}
        raise PatchError(f"unknown patch type: {directive} in map: {patch}", 400)
    if _RETAIN in patch:
        keep = patch.pop(_RETAIN)
        if not isinstance(keep, list):
            raise PatchError("invalid patch format of retainKeys", 400)
        for k, v in patch.items():
            if v is not None and not k.startswith(("$deleteFromPrimitiveList/", "$setElementOrder/")) and k not in keep:
                raise PatchError("invalid patch format of retainKeys", 400)
        for k in list(original):
            if k not in keep:
                del original[k]
    _apply_element_orders(original, patch, schema)
    for k, patch_v in patch.items():
        delete_list = k.startswith(_DELETE_PRIMITIVES)
        if delete_list:
            k = k[len(_DELETE_PRIMITIVES):]
            if not k:
                raise PatchError("invalid patch format of primitive list", 400)
        if patch_v is None:
            original.pop(k, None)
            continue
        if k not in original or _kind(original[k]) != _kind(patch_v):
            if not delete_list:
                value, keep = _remove_directives(patch_v)
                if keep:
                    original[k] = value
                else:
                    original.pop(k, None)
            continue
        sub = _sub(schema, k)
        _, strategy = _strategy(sub)
        if isinstance(patch_v, dict):
            original[k] = patch_v if strategy == "replace" else _merge_map(original[k], patch_v, sub)
        elif isinstance(patch_v, list):
            original[k] = _merge_list_field(original[k], patch_v, sub, delete_list)
        else:
            original[k] = patch_v
    return original


def _merge_list_field(original: list, patch: list, sub: "Schema | None", delete_list: bool) -> list:
    _, strategy = _strategy(sub)
    if strategy == "merge" or delete_list:
        return _merge_list(original, patch, sub, delete_list)
    return patch  # a list without the merge strategy is replaced by the patch's, as sent


def _element_kind(*lists: list) -> str:
    kinds = {_kind(v) for lst in lists for v in lst}
    if "list" in kinds:
        raise PatchError("lists of lists are not supported", 422)
    if len(kinds) > 1:
        raise PatchError(f"only lists of a single type are supported, got {sorted(kinds)}", 400)
    return kinds.pop() if kinds else ""


def _merge_list(original: list, patch: list, sub: "Schema | None", delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _element_kind(original, patch)
    key = sub.patch_merge_key() if sub is not None else ""
    items = sub.items() if sub is not None else None
    if kind != "dict":
        if delete_list:
            gone = [v for v in patch]
            return [v for v in original if v not in gone]
        merged: list = []
        for v in original + patch:
            if v not in merged:
                merged.append(v)
        return _order(merged, patch, original, "", kind)
    if not key:
        raise PatchError("cannot merge lists without merge key")
    plain, replace = [], False
    for item in patch:
        directive = item.get(_DIRECTIVE)
        if directive is None:
            plain.append(item)
        elif directive == "delete":
            if key not in item:
                raise _no_merge_key(item, key)
            original = [o for o in original if not (isinstance(o, dict) and o.get(key) == item[key])]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise PatchError("merging lists cannot yet be specified in the patch")
        else:
            raise PatchError(f"unknown patch type: {directive} in map: {item}", 400)
    if replace:
        original, plain = [v for v, keep in map(_remove_directives, plain) if keep], []
    merged = list(original)
    for item in plain:
        if key not in item:
            raise _no_merge_key(item, key)
        at = next((n for n, o in enumerate(merged) if o.get(key) == item[key]), None)
        if at is None:
            merged.append(_remove_directives(item)[0])
        else:
            merged[at] = _merge_map(merged[at], item, items)
    return _order(merged, plain, original, key, kind)


def _position(order: list, value: Any, key: str) -> int:
    probe = value.get(key) if key else value
    for n, v in enumerate(order):
        if (v.get(key) if key and isinstance(v, dict) else v) == probe:
            return n
    return -1


def _order(merged: list, patch_order: list, server_order: list, key: str, kind: str) -> list:
    """normalizeElementOrder: patch items in patch order, server-only items in live order,
    interleaved by their live positions (mergeSortedSlice)."""
    if key:
        for v in merged + patch_order:
            if isinstance(v, dict) and key not in v:
                raise _no_merge_key(v, key)
    in_patch = [v for v in merged if _position(patch_order, v, key) >= 0]
    server_only = [v for v in merged if _position(patch_order, v, key) < 0]
    in_patch.sort(key=lambda v: _position(patch_order, v, key))
    server_only.sort(key=lambda v: (_position(server_order, v, key) < 0, _position(server_order, v, key)))
    out, i, j = [], 0, 0
    while i < len(server_only) or j < len(in_patch):
        if i >= len(server_only):
            out.append(in_patch[j]); j += 1
        elif j >= len(in_patch):
            out.append(server_only[i]); i += 1
        else:
            li, ri = _position(server_order, server_only[i], key), _position(server_order, in_patch[j], key)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(server_only[i]); i += 1
            else:
                out.append(in_patch[j]); j += 1
    return out


def _apply_element_orders(original: dict, patch: dict, schema: "Schema | None") -> None:
    """mergePatchIntoOriginal: each ``$setElementOrder/<field>`` merges and orders that list now."""
    for directive in [k for k in patch if k.startswith(_SET_ORDER)]:
        order = patch.pop(directive)
        field = directive[len(_SET_ORDER):]
        if not field:
            raise PatchError("invalid patch format of setElementOrder list", 400)
        if not isinstance(order, list):
            raise PatchError("invalid patch format of setElementOrder list", 400)
        sub = _sub(schema, field)
        key = sub.patch_merge_key() if sub is not None else ""
        live, patch_list = original.get(field), patch.get(field)
        if field in original and not isinstance(live, list) or field in patch and not isinstance(patch_list, list):
            raise PatchError("invalid patch format of setElementOrder list", 400)
        _check_order(patch_list or [], order, key)
        if field in original and field not in patch:
            merged = live
        elif field in patch and field not in original:
            merged = _remove_directives(patch_list)[0]
        elif field in patch:
            merged = _merge_list_field(live, patch_list, sub, False)
        else:
            continue
        kind = _element_kind(live or [], patch_list or [])
        original[field] = _order(merged, order, live or [], key, kind)
        patch.pop(field, None)


def _check_order(patch_list: list, order: list, key: str) -> None:
    """validatePatchWithSetOrderList: the patch's items appear in the order list, in its order."""
    items = [v for v in patch_list if not (key and isinstance(v, dict) and v.get(_DIRECTIVE) == "delete")]
    i = j = 0
    while i < len(items) and j < len(order):
        if isinstance(items[i], dict) and _DIRECTIVE in items[i]:
            i += 1
            continue
        if key:
            if not isinstance(items[i], dict) or key not in items[i]:
                raise _no_merge_key(items[i], key)
            if not isinstance(order[j], dict) or key not in order[j]:
                raise _no_merge_key(order[j], key)
            same = items[i][key] == order[j][key]
        else:
            same = items[i] == order[j]
        if same:
            i += 1
        j += 1
    if i < len(items) and j >= len(order):
        raise PatchError(f"The order in patch list:\n{patch_list}\n doesn't match $setElementOrder list:\n{order}\n")
