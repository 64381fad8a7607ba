"""The OpenAPI v2 document in protobuf, as kube-openapi serves /openapi/v2 to kubectl.

kubectl asks for ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and no JSON
(client-go discovery's OpenAPISchema), e.g. to validate the items of a ``kind: List``. The real
server converts its JSON document with gnostic (openapiv2.ParseDocument, then proto.Marshal);
this encodes the same JSON document by the field numbers of gnostic's openapiv2/OpenAPIv2.proto.
Values gnostic keeps as ``Any`` (vendor extensions, defaults, enums, examples) carry their YAML
text, which for these values is their JSON (kube-openapi's readers yaml.Unmarshal it).
"""

from __future__ import annotations

import json
from typing import Any

from .protowire import boolean, double, integer, message, string

MEDIA_TYPE = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
# what kube-openapi's handler answers with (its ReturnedContentType: "@" is no token character to
# Go's mime.ParseMediaType, which client-go runs on the response)
RETURNED_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

# Schema (openapi.v2.Schema): JSON key -> (field number, kind)
_SCHEMA_FIELDS: dict[str, tuple[int, str]] = {
    "$ref": (1, "str"), "format": (2, "str"), "title": (3, "str"), "description": (4, "str"),
    "default": (5, "any"), "multipleOf": (6, "double"), "maximum": (7, "double"), "exclusiveMaximum": (8, "bool"),
    "minimum": (9, "double"), "exclusiveMinimum": (10, "bool"), "maxLength": (11, "int"), "minLength": (12, "int"),
    "pattern": (13, "str"), "maxItems": (14, "int"), "minItems": (15, "int"), "uniqueItems": (16, "bool"),
    "maxProperties": (17, "int"), "minProperties": (18, "int"), "required": (19, "strs"), "enum": (20, "anys"),
    "discriminator": (26, "str"), "readOnly": (27, "bool"), "example": (30, "any"),
}


def _any(no: int, value: Any) -> bytes:
    return message(no, string(2, json.dumps(value, separators=(",", ":"), sort_keys=True)))


def _extensions(no: int, node: dict) -> bytes:
    return b"".join(message(no, string(1, k) + _any(2, v)) for k, v in node.items() if k.startswith("x-"))


def _scalar(no: int, kind: str, value: Any) -> bytes:
    if kind == "str":
        return string(no, value)
    if kind == "strs":
        return b"".join(message(no, v.encode()) for v in value)
    if kind == "bool":
        return boolean(no, bool(value))
    if kind == "int":
        return integer(no, int(value))
    if kind == "double":
        return double(no, value)
    if kind == "any":
        return _any(no, value)
    return b"".join(_any(no, v) for v in value)  # anys


def schema(node: dict) -> bytes:
    out = b""
    for key, (no, kind) in _SCHEMA_FIELDS.items():
        if key in node:
            out += _scalar(no, kind, node[key])
    extra = node.get("additionalProperties")
    if isinstance(extra, bool):
        out += message(21, boolean(2, extra) or b"\x10\x00")
    elif isinstance(extra, dict):
        out += message(21, message(1, schema(extra)))
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        out += message(22, b"".join(message(1, t.encode()) for t in types))
    if "items" in node:
        items = node["items"] if isinstance(node["items"], list) else [node["items"]]
        out += message(23, b"".join(message(1, schema(i)) for i in items))
    out += b"".join(message(24, schema(s)) for s in node.get("allOf") or [])
    if "properties" in node:
        out += message(25, b"".join(message(1, string(1, k) + message(2, schema(v)))
                                    for k, v in node["properties"].items()))
    return out + _extensions(31, node)


def _parameter(p: dict) -> bytes:
    if p.get("in") == "body":
        body = (string(1, p.get("description", "")) + string(2, p["name"]) + string(3, "body")
                + boolean(4, p.get("required", False)) + message(5, schema(p.get("schema") or {})))
        return message(1, message(1, body))
    # QueryParameterSubSchema (3) and PathParameterSubSchema (4) inside NonBodyParameter (2)
    if p.get("in") == "path":
        sub = (boolean(1, p.get("required", False)) + string(2, "path") + string(3, p.get("description", ""))
               + string(4, p["name"]) + string(5, p.get("type", "")) + boolean(19, p.get("uniqueItems", False)))
        return message(1, message(2, message(4, sub)))
    sub = (boolean(1, p.get("required", False)) + string(2, p.get("in", "query")) + string(3, p.get("description", ""))
           + string(4, p["name"]) + string(6, p.get("type", "")) + boolean(20, p.get("uniqueItems", False)))
    return message(1, message(2, message(3, sub)))


def _operation(op: dict) -> bytes:
    out = b"".join(message(1, t.encode()) for t in op.get("tags") or [])
    out += string(3, op.get("description", "")) + string(5, op.get("operationId", ""))
    out += b"".join(message(8, _parameter(p)) for p in op.get("parameters") or [])
    responses = b""
    for code, r in (op.get("responses") or {}).items():
        resp = string(1, r.get("description", ""))
        if "schema" in r:
            resp += message(2, message(1, schema(r["schema"])))
        responses += message(1, string(1, code) + message(2, message(1, resp)))
    out += message(9, responses)
    return out + _extensions(13, op)


_VERBS = {"get": 2, "put": 3, "post": 4, "delete": 5, "patch": 8}


def document(doc: dict) -> bytes:
    """gnostic's openapi_v2.Document of a Swagger 2.0 document given as JSON."""
    info = doc.get("info") or {}
    out = string(1, doc.get("swagger", "2.0")) + message(2, string(1, info.get("title", "")) + string(2, info.get("version", "")))
    paths = b""
    for path, item in (doc.get("paths") or {}).items():
        body = b"".join(message(no, _operation(item[verb])) for verb, no in _VERBS.items() if verb in item)
        body += b"".join(message(9, _parameter(p)) for p in item.get("parameters") or [])
        paths += message(2, string(1, path) + message(2, body))
    out += message(8, paths)
    out += message(9, b"".join(message(1, string(1, name) + message(2, schema(s)))
                               for name, s in (doc.get("definitions") or {}).items()))
    return out
