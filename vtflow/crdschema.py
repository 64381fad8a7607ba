"""The CRD-schema dialect (a structural ``openAPIV3Schema``) as the API server applies it.

The server first prunes fields the schema does not declare and fills ``default``s, then
validates what is left. vtflow does the same to a VitessCluster before applying it (so a bad
spec fails before anything changes, naming the field), and the Kubernetes API double imports
this module for every custom resource it stores: one implementation, tested by itself
(tests/vtflow/test_crdschema.py).

Understood: ``x-kubernetes-int-or-string``, ``nullable``, ``x-kubernetes-preserve-unknown-fields``,
``x-kubernetes-embedded-resource``, ``default``. ``metadata`` is ObjectMeta, checked by the server
on its own, so it is not validated here. Pure: no I/O, no Kubernetes client.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

import jsonschema

__all__ = ["crd_schema", "dropped", "field_path", "prune_and_default", "to_json_schema", "validate"]


def _is_object(schema: dict) -> bool:
    return schema.get("type") == "object" or "properties" in schema or "additionalProperties" in schema


def prune_and_default(value: Any, schema: dict | None, root: bool = False) -> Any:
    """Drop fields the structural schema does not declare, fill ``default``s (in place); returns the value."""
    if schema is None or not isinstance(schema, dict):
        return value
    if schema.get("x-kubernetes-int-or-string"):
        return value
    if isinstance(value, dict) and _is_object(schema):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        embedded = schema.get("x-kubernetes-embedded-resource", False)
        if props:
            for k, sub in props.items():
                if k not in value and isinstance(sub, dict) and "default" in sub:
                    value[k] = copy.deepcopy(sub["default"])
        for k in list(value):
            if (root or embedded) and k in ("apiVersion", "kind", "metadata"):
                continue
            if props and k in props:
                value[k] = prune_and_default(value[k], props[k])
            elif isinstance(addl, dict):
                value[k] = prune_and_default(value[k], addl)
            elif addl is True or preserve:
                continue
            else:
                del value[k]
        return value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune_and_default(v, schema["items"]) for v in value]
    return value


def to_json_schema(schema: Any) -> Any:
    """openAPIV3Schema -> a Draft 4 JSON Schema (OpenAPI 3.0's dialect: boolean ``exclusiveMaximum``)."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for k, v in schema.items():
        if k in ("properties", "patternProperties", "definitions"):
            out[k] = {pk: to_json_schema(pv) for pk, pv in v.items()}
        elif k in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[k] = to_json_schema(v)
        elif k in ("default", "example", "description", "format") or k.startswith("x-kubernetes"):
            continue
        else:
            out[k] = v
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


_lock = threading.Lock()
_validators: dict[int, tuple[dict, Any]] = {}


def _validator(schema: dict):
    """One compiled validator per schema object (a CRD's schema is read once and kept)."""
    with _lock:
        cached = _validators.get(id(schema))
        if cached is None or cached[0] is not schema:
            js = to_json_schema(schema)
            # metadata is ObjectMeta, validated by the server itself; CRD schemas may only narrow it
            js.get("properties", {}).pop("metadata", None)
            cached = (schema, jsonschema.Draft4Validator(js))
            _validators[id(schema)] = cached
        return cached[1]


def validate(obj: dict, schema: dict | None) -> tuple[dict, list[jsonschema.ValidationError]]:
    """Prune and default a copy of ``obj`` as the server does, then validate it.

    Returns the object the server would store and its schema errors, sorted by field path."""
    schema = schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    stored = prune_and_default(copy.deepcopy(obj), schema, root=True)
    errors = sorted(_validator(schema).iter_errors(stored), key=lambda e: [str(p) for p in e.absolute_path])
    return stored, errors


def dropped(sent: Any, stored: Any, path: tuple = ()) -> list[str]:
    """The field paths of ``sent`` that pruning left out of ``stored`` (``validate``'s first
    result): what the server would silently drop, as a schema of an older release lacks it."""
    if isinstance(sent, dict) and isinstance(stored, dict):
        out = []
        for key, value in sent.items():
            if key not in stored:
                out.append(field_path(path + (key,)))
            else:
                out += dropped(value, stored[key], path + (key,))
        return out
    if isinstance(sent, list) and isinstance(stored, list):
        return [p for i, (a, b) in enumerate(zip(sent, stored)) for p in dropped(a, b, path + (i,))]
    return []


def crd_schema(crd: dict, version: str) -> dict | None:
    """The ``openAPIV3Schema`` of one served version of a CustomResourceDefinition, or None."""
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version:
            return ((v.get("schema") or {}).get("openAPIV3Schema"))
    return None


def field_path(parts) -> str:
    """``["spec", "cells", 0, "name"]`` -> ``spec.cells[0].name``, as the server names fields."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    return out
