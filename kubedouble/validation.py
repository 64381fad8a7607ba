"""Validate every write before it is stored, as the API server does.

- Metadata: a name (or generateName) is required and must be a DNS-1123 subdomain (label for
  namespaces and services; RBAC objects only need a path-segment name).
- Built-in kinds: the OpenAPI schemas of the configured server version shipped by
  ``kubernetes_validate`` (loaded once per version and kind, then cached). An apiVersion the
  server version does not serve (``SchemaNotFoundError``) is refused.
- Custom kinds: the ``openAPIV3Schema`` of the CRD version, pruned, defaulted and checked by
  ``vtflow.crdschema`` (product code: the deploy checks its VitessCluster with the same module).

Errors become 422 ``Invalid`` with one cause per problem and the field path in each message.
DIFFERENCE from the real server: a wrong JSON type in a built-in kind is a 400 decode error
there; here it is a 422 with the field path like every other schema error. This module must
not touch the store or HTTP; semantic admission (namespaces exist, ports free) is in ``admission.py``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils as kv_utils
from referencing import Registry, Resource

from vtflow import crdschema
from vtflow.crdschema import field_path

from .resources import ResourceType
from .status import (ApiError, Cause, bad_request, invalid, invalid_value, required_value,
                     unsupported_value)

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                  "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                  "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
              "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
              "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
_LABEL_NAMED = {"namespaces", "services"}
_PATH_SEGMENT_NAMED = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}
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
        elif not _LABEL.match(name):
            causes.append(invalid_value("metadata.name", name, _LABEL_MSG))
    else:
        if len(name) > 253:
            causes.append(invalid_value("metadata.name", name, "must be no more than 253 characters"))
        elif not _SUBDOMAIN.match(name):
            causes.append(invalid_value("metadata.name", name, _SUBDOMAIN_MSG))
    for k, v in (meta.get("labels") or {}).items():
        if not isinstance(v, str) or len(v) > 63 or (v and not re.match(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", v)):
            causes.append(invalid_value("metadata.labels", v,
                                        "a valid label must be an empty string or consist of alphanumeric "
                                        "characters, '-', '_' or '.', and must start and end with an "
                                        "alphanumeric character"))
    return causes


# -- built-in kinds ------------------------------------------------------------------------

_cache_lock = threading.Lock()
_defs_cache: dict[tuple[str, bool], Resource] = {}
_validator_cache: dict[tuple[str, str, str, bool], Any] = {}


def _schema_version(server_version: str) -> str:
    want = kv_utils.major_minor(server_version.lstrip("v"))
    if want > kv_utils.latest_version():
        raise ApiError(500, "InternalError", f"kubernetes-validate has no schemas for {server_version}")
    versions = [v for v in kv_utils.all_versions() if kv_utils.major_minor(v) <= want]
    if not versions:
        raise ApiError(500, "InternalError", f"kubernetes-validate has no schemas for {server_version}")
    return versions[-1]


def _builtin_validator(server_version: str, api_version: str, kind: str, strict: bool):
    """The same schema files and validator class kubernetes_validate.validate uses, cached."""
    key = (server_version, api_version, kind, strict)
    with _cache_lock:
        if key in _validator_cache:
            return _validator_cache[key]
        version = _schema_version(server_version)
        schema_dir = f"v{version}-local" + ("-strict" if strict else "")
        short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        try:
            schema = kv_utils.schema_contents(
                f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{short}.json", server_version)
        except FileNotFoundError:
            raise kubernetes_validate.SchemaNotFoundError(
                version=kv_utils.major_minor(server_version), kind=kind, api_version=api_version) from None
        if (version, strict) not in _defs_cache:
            _defs_cache[(version, strict)] = Resource.from_contents(
                kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", server_version))
        registry = Resource.from_contents(schema) @ (_defs_cache[(version, strict)] @ Registry())
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


def validate_builtin(rt: ResourceType, obj: dict, server_version: str, strict: bool = False) -> list[Cause]:
    try:
        validator = _builtin_validator(server_version, obj.get("apiVersion", ""), obj.get("kind", ""), strict)
    except kubernetes_validate.SchemaNotFoundError:
        raise bad_request(f'no kind "{obj.get("kind")}" is registered for version '
                          f'"{obj.get("apiVersion")}" in scheme "k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30"') from None
    errors = _sorted_errors(validator, obj)
    if strict:
        unknown = [e for e in errors if e.validator == "additionalProperties"]
        if unknown:
            fields = []
            for e in unknown:
                for extra in re.findall(r"'([^']+)'", e.message.split("(")[-1]):
                    fields.append(field_path(list(e.absolute_path) + [extra]))
            raise bad_request("strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in fields))
    return [_error_cause(e) for e in errors]


_ZERO = {"integer": 0, "number": 0, "string": "", "boolean": False}


def empty_status(rt: ResourceType, server_version: str) -> dict:
    """A built-in kind's status before any controller wrote it: the Go struct serialized, i.e. its
    required (non-omitempty) fields at their zero values."""
    validator = _builtin_validator(server_version, rt.api_version, rt.kind, False)
    ref = ((validator.schema.get("properties") or {}).get("status") or {}).get("$ref", "")
    if "#/$defs/" not in ref:
        return {}
    version = _schema_version(server_version)
    definition = _defs_cache[(version, False)].contents["$defs"].get(ref.split("#/$defs/")[1], {})
    props = definition.get("properties") or {}
    out = {}
    for name in definition.get("required") or []:
        kind = props.get(name, {}).get("type")
        if isinstance(kind, str) and kind in _ZERO:
            out[name] = _ZERO[kind]
    return out


# -- custom kinds --------------------------------------------------------------------------

def validate_custom(rt: ResourceType, obj: dict) -> tuple[dict, list[Cause]]:
    """Pruned, defaulted and checked by vtflow's own CRD-schema module (the deploy uses it too)."""
    stored, errors = crdschema.validate(obj, rt.schema)
    return stored, [_error_cause(e) for e in errors]


# -- entry point ---------------------------------------------------------------------------

def validate(rt: ResourceType, obj: dict, server_version: str, strict: bool = False) -> dict:
    """Return the object to store (custom kinds pruned and defaulted); raise 422/400 otherwise."""
    causes = metadata_causes(rt, obj)
    if rt.crd:
        obj, more = validate_custom(rt, obj)
    else:
        more = validate_builtin(rt, obj, server_version, strict)
    causes += more
    if causes:
        name = (obj.get("metadata") or {}).get("name") or (obj.get("metadata") or {}).get("generateName", "")
        raise invalid(rt.kind, rt.group, name, causes)
    return obj
