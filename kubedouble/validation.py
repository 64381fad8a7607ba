"""Validate every write before it is stored, as the API server does, in the server's order.

1. Decoding (400 BadRequest, worded as the create/update handlers' transformDecodeError, bare for
   patches): unknown fields are dropped from built-in kinds (walking the ``kubernetes_validate``
   schema of the configured server version) and pruned from custom kinds (``vtflow.crdschema``);
   with duplicated JSON keys they follow ``fieldValidation``: Ignore, Warn (the default: one
   ``Warning`` header each) or Strict (400 ``strict decoding error: ...``). Quantities are parsed
   and stored in canonical form (``quantity.canonical_quantity``); one that does not parse is 400.
   A Secret's ``stringData`` is merged into ``data``.
2. Schema: the OpenAPI schemas of built-in kinds, the CRD's ``openAPIV3Schema`` for custom kinds.
3. Metadata names and labels; the Go validation rules of the built-in kinds, on create and on
   update (immutable fields), from ``semantics.py``.

Errors of 2 and 3 become one 422 ``Invalid`` with a cause per problem, named by field path.
DIFFERENCES from the real server: a wrong JSON type in a built-in kind is a 400 decode error
there; here it is a 422 with the field path like every other schema error. Duplicates are
listed before unknown fields (the server interleaves them in document order); YAML bodies are
not checked for duplicate keys; unknown ``metadata`` fields of custom resources are kept. This
module must not touch the store or HTTP; admission that reads the store is in ``admission.py``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource

from vtflow import crdschema
from vtflow.crdschema import field_path

from . import openapi, semantics
from .quantity import canonical_quantity
from .resources import ResourceType
from .status import (
    ApiError,
    Cause,
    bad_request,
    invalid,
    invalid_value,
    required_value,
    unsupported_value,
)

_LABEL_NAMED = {"namespaces", "services"}
_PATH_SEGMENT_NAMED = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number", dict: "object",
               list: "array", type(None): "null"}


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), "object")


# -- metadata ------------------------------------------------------------------------------

def metadata_causes(rt: ResourceType, obj: dict) -> list[Cause]:
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    causes: list[Cause] = []
    if not name:
        if not meta.get("generateName"):
            causes.append(required_value("metadata.name", "name or generateName is required"))
        return causes
    if rt.plural in _PATH_SEGMENT_NAMED:
        if name in (".", "..") or "/" in name or "%" in name:
            causes.append(invalid_value("metadata.name", name, 'may not contain "/" or "%"'))
    elif rt.plural in _LABEL_NAMED:
        if len(name) > 63:
            causes.append(invalid_value("metadata.name", name, "must be no more than 63 characters"))
        elif not semantics.LABEL.match(name):
            causes.append(invalid_value("metadata.name", name, semantics.LABEL_MSG))
    else:
        if len(name) > 253:
            causes.append(invalid_value("metadata.name", name, "must be no more than 253 characters"))
        elif not semantics.SUBDOMAIN.match(name):
            causes.append(invalid_value("metadata.name", name, semantics.SUBDOMAIN_MSG))
    causes += semantics.label_causes(meta.get("labels"), "metadata.labels")
    return causes


# -- built-in kinds ------------------------------------------------------------------------

_cache_lock = threading.Lock()
_defs_cache: dict[Path, Resource] = {}   # schema folder -> its _definitions.json as a referencing Resource
_validator_cache: dict[tuple[str, str, str, bool], Any] = {}


def _builtin_validator(server_version: str, api_version: str, kind: str, strict: bool):
    """The same schema files and validator class kubernetes_validate.validate uses, cached; the files
    come from openapi.py's loader (shared with the OpenAPI documents). FileNotFoundError when the
    version has no such kind."""
    key = (server_version, api_version, kind, strict)
    with _cache_lock:
        if key in _validator_cache:
            return _validator_cache[key]
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = openapi.schema_file(server_version, f"{kind.lower()}-{short}.json", strict)
    folder = openapi.schema_folder(server_version, strict)
    with _cache_lock:
        if folder not in _defs_cache:
            defs = openapi.schema_file(server_version, "_definitions.json", strict)
            _defs_cache[folder] = Resource.from_contents(defs)
        registry = Resource.from_contents(schema) @ (_defs_cache[folder] @ Registry())
        validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
        _validator_cache[key] = validator
        return validator


def _error_cause(err: jsonschema.ValidationError) -> Cause:
    path = list(err.absolute_path)
    field = field_path(path)
    if err.validator == "required":
        missing = re.match(r"'(.*)' is a required property", err.message)
        sub = missing.group(1) if missing else "?"
        return required_value(field_path(path + [sub]))
    if err.validator == "type":
        expected = err.validator_value
        if isinstance(expected, list):
            expected = next((t for t in expected if t != "null"), expected[0])
        got = json_type(err.instance)
        return invalid_value(field, got, f'{field} in body must be of type {expected}: "{got}"')
    if err.validator == "enum":
        return unsupported_value(field, err.instance, [v for v in err.validator_value if v is not None])
    if err.validator == "pattern":
        return invalid_value(field, err.instance, f"{field} in body should match '{err.validator_value}'")
    if err.validator in ("minimum", "maximum"):
        word = "greater" if err.validator == "minimum" else "less"
        return invalid_value(field, err.instance, f"{field} in body should be {word} than or equal to {err.validator_value}")
    if err.validator in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
        return invalid_value(field, err.instance, f"{field} in body {err.message}")
    if err.validator in ("anyOf", "oneOf") and err.instance is not None:
        types = [s.get("type") for s in err.validator_value if isinstance(s, dict) and s.get("type")]
        if types:
            got = json_type(err.instance)
            return invalid_value(field, got, f'{field} in body must be of type {" or ".join(map(str, types))}: "{got}"')
    return invalid_value(field, err.instance if not isinstance(err.instance, (dict, list)) else json_type(err.instance),
                         err.message)


def _sorted_errors(validator, obj) -> list[jsonschema.ValidationError]:
    return sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])


def _builtin_schema(rt: ResourceType, obj: dict, server_version: str):
    try:
        return _builtin_validator(server_version, obj.get("apiVersion", ""), obj.get("kind", ""), True)
    except FileNotFoundError:
        raise bad_request(f'no kind "{obj.get("kind")}" is registered for version '
                          f'"{obj.get("apiVersion")}" in scheme "k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30"') from None


def validate_builtin(validator, obj: dict) -> list[Cause]:
    """Schema errors other than unknown fields (those are the decoder's, see ``decode_builtin``)."""
    return [_error_cause(e) for e in _sorted_errors(validator, obj) if e.validator != "additionalProperties"]


def decode_builtin(validator, obj: dict, server_version: str) -> tuple[list[tuple], list[tuple[tuple, str]]]:
    """What the typed decoder does to a built-in object, in place: unknown fields dropped (their
    paths returned, in document order), quantities stored in canonical form (the ones that do not
    parse returned with the parser's message), and values of the wrong JSON type returned with
    the decoder's message (a real server refuses them with 400 before any validation)."""
    defs = openapi.definitions(server_version, strict=True)
    unknown: list[tuple] = []
    bad: list[tuple[tuple, str]] = []
    top = validator.schema.get("$ref", "").rsplit("/", 1)[-1] or str(obj.get("kind") or "")

    # ``field`` is the decoder's field stack: struct fields only (no map keys, no list indexes)
    def walk(value, schema, path, struct, field):
        while isinstance(schema, dict) and "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            if name == _QUANTITY:
                if value is None:
                    return value
                try:
                    return canonical_quantity(value)
                except ValueError as e:
                    bad.append((path, str(e)))
                    return value
            schema = defs.get(name, {})
            if isinstance(schema, dict) and "properties" in schema:
                struct = name
        if not isinstance(schema, dict):
            return value
        wrong = _type_mismatch(value, schema)
        if wrong:
            bad.append((path, _unmarshal_error(wrong, schema, struct, field)))
            return value
        if isinstance(value, dict):
            props, addl = schema.get("properties"), schema.get("additionalProperties")
            if props is None and not isinstance(addl, dict):
                return value  # free-form (RawExtension, JSON, FieldsV1)
            for k in list(value):
                sub = (props or {}).get(k, addl if isinstance(addl, dict) else None)
                if sub is None:
                    unknown.append(path + (k,))
                    del value[k]
                else:
                    value[k] = walk(value[k], sub, path + (k,), struct, field + ((k,) if props and k in props else ()))
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                value[i] = walk(item, schema["items"], path + (i,), struct, field)
        return value

    walk(obj, validator.schema, (), top, ())
    return unknown, bad


_ACCEPTS = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,),
            "object": (dict,), "array": (list,)}


def _type_mismatch(value, schema: dict) -> str | None:
    """The JSON kind of ``value`` when the schema's type refuses it (Go's decoder: null fits anything)."""
    want = schema.get("type")
    if value is None or want is None:
        return None
    wanted = [want] if isinstance(want, str) else [w for w in want if w != "null"]
    if not wanted:
        return None
    fits = any(isinstance(value, _ACCEPTS.get(w, ())) and not (isinstance(value, bool) and w in ("integer", "number"))
               for w in wanted)
    if fits and not (isinstance(value, float) and "integer" in wanted and "number" not in wanted):
        return None
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        # a fractional number for an integer: Go names the literal ("number 1.5")
        return f"number {value}" if isinstance(value, float) and "integer" in wanted else "number"
    return {str: "string", dict: "object", list: "array"}[type(value)]


def _go_type(schema: dict) -> str:
    want = schema.get("type")
    want = want if isinstance(want, str) else next((w for w in want or [] if w != "null"), "")
    fmt = schema.get("format", "")
    if want == "integer":
        return fmt if fmt in ("int32", "int64") else "int64"
    if want == "number":
        return "float64"
    if want == "boolean":
        return "bool"
    if want == "string":
        return "[]uint8" if fmt == "byte" else "string"
    if want == "object":
        extra = schema.get("additionalProperties")
        return f"map[string]{_go_type(extra)}" if isinstance(extra, dict) else "map[string]interface {}"
    if want == "array":
        items = schema.get("items") or {}
        ref = items.get("$ref", "") if isinstance(items, dict) else ""
        return "[]" + (".".join(ref.rsplit("/", 1)[-1].rsplit(".", 2)[-2:]) if ref else _go_type(items))
    return "interface {}"


def _unmarshal_error(got: str, schema: dict, struct: str, field: tuple) -> str:
    """encoding/json's UnmarshalTypeError as kube-apiserver's decoder (sigs.k8s.io/json) words it:
    the innermost Go struct, the struct fields' JSON path from the root, the Go type."""
    return (f"json: cannot unmarshal {got} into Go struct field {struct.rsplit('.', 1)[-1]}.{'.'.join(field)} "
            f"of type {_go_type(schema)}")


_ZERO = {"integer": 0, "number": 0, "string": "", "boolean": False}


def empty_status(rt: ResourceType, server_version: str) -> dict:
    """A built-in kind's status before any controller wrote it: the Go struct serialized, i.e. its
    required (non-omitempty) fields at their zero values."""
    validator = _builtin_validator(server_version, rt.api_version, rt.kind, False)
    ref = ((validator.schema.get("properties") or {}).get("status") or {}).get("$ref", "")
    if "#/$defs/" not in ref:
        return {}
    definition = openapi.definitions(server_version).get(ref.split("#/$defs/")[1], {})
    props = definition.get("properties") or {}
    out = {}
    for name in definition.get("required") or []:
        kind = props.get(name, {}).get("type")
        if isinstance(kind, str) and kind in _ZERO:
            out[name] = _ZERO[kind]
    return out


# -- custom kinds --------------------------------------------------------------------------

def validate_custom(rt: ResourceType, obj: dict) -> tuple[dict, list[tuple], list[Cause]]:
    """Pruned, defaulted and checked by vtflow's own CRD-schema module (the deploy uses it too);
    also returns the paths pruning dropped, in document order."""
    stored, errors = crdschema.validate(obj, rt.schema)
    return stored, _dropped(obj, stored, ()), [_error_cause(e) for e in errors]


def _dropped(before: Any, after: Any, path: tuple) -> list[tuple]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[tuple] = []
        for k, v in before.items():
            out += _dropped(v, after[k], path + (k,)) if k in after else [path + (k,)]
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [p for i, (b, a) in enumerate(zip(before, after)) for p in _dropped(b, a, path + (i,))]
    return []


# -- decoding: unknown and duplicate fields (fieldValidation) ---------------------------------

FIELD_VALIDATION = ("Ignore", "Warn", "Strict")


@dataclass
class Decoding:
    """How the request body was decoded: the ``fieldValidation`` directive, the duplicated fields
    the JSON parser saw, whether it was a patch (the server words decode errors differently), and
    the warnings the response will carry."""
    directive: str = "Warn"
    duplicates: list[str] = field(default_factory=list)
    patch: bool = False
    warnings: list[str] = field(default_factory=list)

    def fail(self, rt: ResourceType, message: str) -> ApiError:
        """A decode error: 400, prefixed as the create/update handlers' transformDecodeError does."""
        if self.patch:
            return bad_request(message)
        version = rt.api_version.rsplit("/", 1)[-1]
        return bad_request(f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: {message}')

    def unknown_fields(self, rt: ResourceType, unknown: list[tuple]) -> None:
        problems = [f'duplicate field "{d}"' for d in self.duplicates] + \
                   [f'unknown field "{field_path(list(u))}"' for u in unknown]
        if not problems or self.directive == "Ignore":
            return
        if self.directive == "Strict":
            raise self.fail(rt, "strict decoding error: " + ", ".join(problems))
        self.warnings.extend(problems)


def duplicate_fields(body: bytes) -> list[str]:
    """Paths of the keys a JSON body repeats (the last one wins, as in Go), in document order."""
    class Pairs(list):
        pass
    try:
        tree = json.loads(body or b"null", object_pairs_hook=Pairs)
    except ValueError:
        return []
    out: list[str] = []

    def walk(node, path):
        if isinstance(node, Pairs):
            seen = set()
            for k, v in node:
                if k in seen:
                    out.append(field_path(path + [k]))
                seen.add(k)
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])
    walk(tree, [])
    return out


def merge_string_data(obj: dict) -> None:
    """A Secret's ``stringData`` is write-only: merged into base64 ``data`` (it wins for a key
    both set), never stored (pkg/apis/core/v1/conversion.go Convert_v1_Secret_To_core_Secret)."""
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict) and string_data:
        data = obj.get("data") or {}
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        obj["data"] = data


# -- entry point ---------------------------------------------------------------------------

def validate(rt: ResourceType, obj: dict, server_version: str, old: dict | None = None,
             decoding: Decoding | None = None) -> dict:
    """Return the object to store (unknown fields dropped, quantities canonical, custom kinds
    defaulted); raise 400 (decode errors) or 422 (invalid) otherwise."""
    decoding = decoding or Decoding()
    if rt.crd:
        obj, unknown, more = validate_custom(rt, obj)
        decoding.unknown_fields(rt, unknown)
    else:
        validator = _builtin_schema(rt, obj, server_version)
        unknown, bad = decode_builtin(validator, obj, server_version)
        decoding.unknown_fields(rt, unknown)
        if bad:
            raise decoding.fail(rt, bad[0][1])
        more = validate_builtin(validator, obj)
        if rt.gr == ("", "secrets"):
            merge_string_data(obj)
    causes = metadata_causes(rt, obj) + more
    if not rt.crd and not more:
        causes += semantics.object_causes(rt, obj)
        if old is not None:
            causes += semantics.update_causes(rt, obj, old)
    if causes:
        name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName", "")
        raise invalid(rt.kind, rt.group, name, causes)
    return obj
