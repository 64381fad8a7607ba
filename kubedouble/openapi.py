"""The schemas the double validates with, as the OpenAPI documents and merge metadata of a real server.

- The loader (``schema_folder``, ``schema_file``, ``definitions``): kubernetes-validate's JSON
  schemas of the server's minor, each file parsed once per process, shared with validation.py.
  1.25+ come from the pinned package, 1.22-1.24 from an older release in a folder of its own
  (``older_release_dir``); a minor neither has raises ``SchemaVersionError`` when the double is
  built, never later on a write.
- ``Schema``: one node of a kind's schema with ``$ref``s resolved; patch.py and apply.py read the
  patch strategy / merge key (strategic merge patch) and list type / map keys (server-side
  apply) from it, as the real server reads them from its Go types and OpenAPI models.
- ``/openapi/v3`` (index with ``?hash=`` URLs), ``/openapi/v3/<group-version>`` and
  ``/openapi/v2`` (JSON, or gnostic's protobuf from ``openapi_pb.py`` when Accept asks for it), built from kubernetes-validate's schemas of the server version for
  built-in kinds and from each CRD version's ``openAPIV3Schema`` for custom kinds. Each document
  is built once per set of kinds and cached with its ETag (uppercase hex SHA-512, as
  kube-openapi's handler3 computes it); a CRD change makes a new document and a new hash.

DIFFERENCES from the real server: the documents list only the
paths and operations kubectl reads (per-kind CRUD with ``x-kubernetes-group-version-kind`` and
the ``fieldValidation``/``dryRun``/``fieldManager``/``force`` query parameters), not watch or
subresource paths. Pure: reads the registry handed in, never the store or HTTP.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

from . import openapi_pb
from .resources import Registry, ResourceType

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_lock = threading.Lock()
_gvk_names: dict[Path, dict] = {}     # schema folder -> {(group, version, kind): definition name}
_converted: dict[tuple[Path, bool], dict] = {}  # (schema folder, v3) -> definitions in OpenAPI form


# -- where the schemas come from -------------------------------------------------------------------
# kubernetes-validate ships kubernetes-json-schema, one folder per minor. The pinned release (the
# sandbox extra) has 1.25 and later; 1.22-1.24 exist only in older releases of the same project
# (Apache-2.0, github.com/willthames/kubernetes-validate). Two releases cannot be installed under one
# name, so the older one is installed into a folder of its own (``python -m kubedouble
# --install-schemas``) and read in place, only for minors the pinned release lacks.
OLDER_RELEASE = "kubernetes-validate==1.33.1"
OLDER_MINORS = range(22, 34)                    # the minors it has schemas for
OLDER_ENV = "KUBEDOUBLE_OLDER_SCHEMAS"          # where it lives, when not under this Python's prefix


class SchemaVersionError(LookupError):
    """No installed schemas are for the server version: the double refuses to start (one line, with the fix)."""


def older_release_dir() -> Path:
    """The folder the older kubernetes-validate release is installed into (pip --target)."""
    default = Path(sys.prefix) / "share" / "kubedouble" / OLDER_RELEASE.replace("==", "-")
    return Path(os.environ.get(OLDER_ENV) or default)


def server_minor(server_version: str) -> int:
    """24 for "1.24.6", "v1.24.6+k3s1" or "1.24"."""
    m = re.match(r"v?1\.(\d+)", server_version)
    if not m:
        raise SchemaVersionError(f"kubedouble: {server_version!r} is not a Kubernetes 1.x version; "
                                 "fix: give one such as v1.24.6+k3s1")
    return int(m.group(1))


def server_minor_or_none(server_version: str) -> int | None:
    try:
        return server_minor(server_version)
    except SchemaVersionError:
        return None


def _pinned_root() -> Path | None:
    spec = importlib.util.find_spec("kubernetes_validate")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "kubernetes-json-schema"


@functools.lru_cache(maxsize=8)
def _folders(older: Path) -> dict[int, Path]:
    """minor -> its schema folder: the pinned release's, else the older release's."""
    out: dict[int, Path] = {}
    for base in (_pinned_root(), older / "kubernetes_validate" / "kubernetes-json-schema"):
        if base is None or not base.is_dir():
            continue
        for folder in base.iterdir():
            m = re.fullmatch(r"v1\.(\d+)\.\d+-local", folder.name)
            if m:
                out.setdefault(int(m.group(1)), folder)
    return out


def _span(minors: Iterable[int]) -> str:
    minors = sorted(minors)
    return f"1.{minors[0]}-1.{minors[-1]}" if minors else "none"


def schema_folder(server_version: str, strict: bool = False) -> Path:
    """The folder of the server version's schemas (``-strict``: no unknown fields allowed)."""
    minor = server_minor(server_version)
    folders = _folders(older_release_dir())
    folder = folders.get(minor)
    if folder is None:
        pinned = sorted(m for m, f in folders.items() if _pinned_root() in f.parents)
        if minor in OLDER_MINORS and not (older_release_dir() / "kubernetes_validate").is_dir():
            raise SchemaVersionError(
                f"kubedouble: no OpenAPI schemas for Kubernetes 1.{minor} are installed (the pinned "
                f"kubernetes-validate has {_span(pinned)}); fix: python -m kubedouble --install-schemas "
                f"--version 1.{minor} (puts {OLDER_RELEASE} into {older_release_dir()})")
        supported = _span([OLDER_MINORS[0], *pinned] if pinned else OLDER_MINORS)
        raise SchemaVersionError(f"kubedouble: no schemas for Kubernetes 1.{minor} (installed: {_span(folders)}; "
                                 f"the double serves {supported}); fix: pick a version in {supported}")
    return folder.with_name(folder.name + "-strict") if strict else folder


def has_schemas(server_version: str) -> bool:
    try:
        schema_folder(server_version)
    except SchemaVersionError:
        return False
    return True


def forget_folders() -> None:
    """Look for schema folders again (after ``--install-schemas`` added one)."""
    _folders.cache_clear()


@functools.lru_cache(maxsize=None)
def _parsed(path: Path) -> dict:
    return json.loads(path.read_text())


def schema_file(server_version: str, name: str, strict: bool = False) -> dict:
    """One file of the server version's schemas (``_definitions.json``, ``deployment-apps-v1.json``),
    parsed once for the process; FileNotFoundError when the version has no such kind. The one loader
    of validation.py and this module."""
    return _parsed(schema_folder(server_version, strict) / name)


def definitions(server_version: str, strict: bool = False) -> dict[str, dict]:
    """kubernetes-validate's definitions (``$defs``) of the server version."""
    return schema_file(server_version, "_definitions.json", strict)["$defs"]


def definition_name(server_version: str, group: str, version: str, kind: str) -> str | None:
    folder = schema_folder(server_version)
    with _lock:
        names = _gvk_names.get(folder)
    if names is None:
        names = {}
        for name, d in definitions(server_version).items():
            for gvk in d.get("x-kubernetes-group-version-kind") or []:
                names[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = name
        with _lock:
            _gvk_names[folder] = names
    return names.get((group, version, kind))


# -- merge metadata ------------------------------------------------------------------------------

class Schema:
    """A schema node: ``ext`` holds the field's own keys (where the x-kubernetes-* markers sit),
    ``node`` the resolved type behind its ``$ref``."""

    __slots__ = ("ext", "node", "defs")

    def __init__(self, node: dict, defs: dict[str, dict]):
        self.ext = node
        self.defs = defs
        seen = 0
        while isinstance(node, dict) and seen < 20:
            ref = node.get("$ref")
            if not ref and len(node.get("allOf") or []) == 1:
                ref = node["allOf"][0].get("$ref")
            if not ref:
                break
            node = defs.get(ref.rsplit("/", 1)[-1], {})
            seen += 1
        self.node = node if isinstance(node, dict) else {}

    def get(self, key: str) -> Any:
        return self.ext.get(key, self.node.get(key))

    def field(self, name: str) -> "Schema | None":
        props = self.node.get("properties") or {}
        if name in props:
            return Schema(props[name], self.defs)
        addl = self.node.get("additionalProperties")
        return Schema(addl, self.defs) if isinstance(addl, dict) else None

    def items(self) -> "Schema | None":
        items = self.node.get("items")
        return Schema(items, self.defs) if isinstance(items, dict) else None

    # strategic merge patch (the Go struct tags patchStrategy / patchMergeKey)
    def patch_strategies(self) -> list[str]:
        value = self.get("x-kubernetes-patch-strategy") or ""
        return [s for s in value.split(",") if s]

    def patch_merge_key(self) -> str:
        return self.get("x-kubernetes-patch-merge-key") or ""

    # server-side apply (structured-merge-diff)
    def list_type(self) -> str:
        return self.get("x-kubernetes-list-type") or "atomic"

    def list_map_keys(self) -> list[str]:
        return list(self.get("x-kubernetes-list-map-keys") or [])

    def map_type(self) -> str:
        return self.get("x-kubernetes-map-type") or "granular"


def schema_for(rt: ResourceType, server_version: str) -> Schema | None:
    """The root schema of a kind: its definition, or the CRD version's schema with ObjectMeta."""
    defs = definitions(server_version)
    if rt.crd:
        if not rt.schema:
            return None
        root = dict(rt.schema)
        root["properties"] = {**(rt.schema.get("properties") or {}), "metadata": {"$ref": "#/$defs/" + _OBJECT_META}}
        return Schema(root, defs)
    name = definition_name(server_version, rt.group, rt.version, rt.kind)
    return Schema(defs[name], defs) if name else None


# -- OpenAPI documents ---------------------------------------------------------------------------

def _to_openapi(node: Any, prefix: str, v3: bool) -> Any:
    """kubernetes-validate's JSON Schema dialect back into OpenAPI: single types, real refs."""
    if isinstance(node, list):
        return [_to_openapi(n, prefix, v3) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict = {}
    for k, v in node.items():
        if k in ("$schema", "$id"):
            continue
        if k == "type" and isinstance(v, list):
            v = next((t for t in v if t != "null"), "string")
        elif k == "$ref":
            v = prefix + v.rsplit("/", 1)[-1]
        elif k in ("properties", "patternProperties"):
            v = {pk: _to_openapi(pv, prefix, v3) for pk, pv in v.items()}
        elif isinstance(v, (dict, list)) and not k.startswith("x-kubernetes") and k not in ("enum", "default", "example"):
            v = _to_openapi(v, prefix, v3)
        out[k] = v
    if v3 and "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}]
    return out


def _converted_defs(server_version: str, v3: bool) -> dict[str, dict]:
    defs = definitions(server_version)
    key = (schema_folder(server_version), v3)
    with _lock:
        if key not in _converted:
            prefix = "#/components/schemas/" if v3 else "#/definitions/"
            out = {}
            for name, d in defs.items():
                if name.endswith("intstr.IntOrString"):
                    out[name] = {"type": "string", "format": "int-or-string"}
                    continue
                if name.endswith("resource.Quantity"):
                    out[name] = {"type": "string"}
                    continue
                c = _to_openapi(d, prefix, v3)
                if c.get("x-kubernetes-group-version-kind"):
                    # kubernetes-validate pins apiVersion/kind with an enum; the real models do not
                    for p in ("apiVersion", "kind"):
                        (c.get("properties") or {}).get(p, {}).pop("enum", None)
                out[name] = c
            _converted[key] = out
        return _converted[key]


def _refs(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                out.add(v.rsplit("/", 1)[-1])
            else:
                _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def _closure(roots: Iterable[str], defs: dict[str, dict]) -> dict[str, dict]:
    todo, seen = list(roots), {}
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen[name] = defs[name]
        more: set[str] = set()
        _refs(defs[name], more)
        todo.extend(more - seen.keys())
    return dict(sorted(seen.items()))


def crd_definition_name(rt: ResourceType) -> str:
    """``com.planetscale.v2.VitessCluster``: the reversed group, as the real CRD builder names it."""
    return ".".join(reversed(rt.group.split("."))) + f".{rt.version}.{rt.kind}"


def _crd_model(rt: ResourceType, v3: bool) -> dict:
    prefix = "#/components/schemas/" if v3 else "#/definitions/"
    schema = copy.deepcopy(rt.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                           "representation of an object."}
    props["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource "
                     "this object represents."}
    meta = {"$ref": prefix + _OBJECT_META, "description": "Standard object's metadata."}
    props["metadata"] = {"allOf": [{"$ref": meta["$ref"]}], "description": meta["description"]} if v3 else meta
    schema["type"] = "object"
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind, "version": rt.version}]
    return schema


_WRITE_PARAMS = (
    ("dryRun", "When present, indicates that modifications should not be persisted."),
    ("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
    ("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request "
     "containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
)


def _param(name: str, description: str, where: str, v3: bool, kind: str = "string") -> dict:
    p = {"name": name, "in": where, "description": description}
    if where == "path":
        p["required"] = True
    if v3:
        p["schema"] = {"type": kind, "uniqueItems": True}
    else:
        p["type"] = kind
        p["uniqueItems"] = True
    return p


def _operation(verb: str, rt: ResourceType, model: str, v3: bool) -> dict:
    gv = (rt.group.title().replace(".", "") if rt.group else "Core") + rt.version.title()
    scope = "Namespaced" if rt.namespaced else ""
    op_id = {"get": f"read{gv}{scope}{rt.kind}", "put": f"replace{gv}{scope}{rt.kind}",
             "patch": f"patch{gv}{scope}{rt.kind}", "delete": f"delete{gv}{scope}{rt.kind}",
             "post": f"create{gv}{scope}{rt.kind}", "list": f"list{gv}{scope}{rt.kind}"}[verb]
    ref = ("#/components/schemas/" if v3 else "#/definitions/") + model
    params = []
    if verb in ("put", "patch", "post"):
        params = [_param(n, d, "query", v3) for n, d in _WRITE_PARAMS]
    if verb == "patch":
        params.append(_param("force", "Force is going to \"force\" Apply requests.", "query", v3, "boolean"))
    op: dict = {"operationId": op_id, "tags": [gv.lower()], "parameters": params,
                "x-kubernetes-action": {"list": "list", "post": "post", "put": "put", "patch": "patch",
                                        "delete": "delete", "get": "get"}[verb],
                "x-kubernetes-group-version-kind": {"group": rt.group, "kind": rt.kind, "version": rt.version}}
    if v3:
        op["responses"] = {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}}
        if verb in ("put", "post"):
            op["requestBody"] = {"content": {"*/*": {"schema": {"$ref": ref}}}, "required": True}
        elif verb == "patch":
            op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in (
                "application/apply-patch+yaml", "application/json-patch+json",
                "application/merge-patch+json", "application/strategic-merge-patch+json")}, "required": True}
    else:
        op["responses"] = {"200": {"description": "OK", "schema": {"$ref": ref}}}
        if verb in ("put", "post", "patch"):
            op["parameters"].insert(0, {"name": "body", "in": "body", "required": True,
                                        "schema": {"$ref": ref} if verb != "patch" else {"type": "object"}})
    return op


def _paths(rts: list[ResourceType], models: dict[ResourceType, str], v3: bool) -> dict:
    paths: dict = {}
    for rt in rts:
        base = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
        if rt.namespaced:
            base += "/namespaces/{namespace}"
        collection, item = f"{base}/{rt.plural}", f"{base}/{rt.plural}/{{name}}"
        shared = [_param("namespace", "object name and auth scope", "path", v3)] if rt.namespaced else []
        m = models[rt]
        paths[collection] = {"get": _operation("list", rt, m, v3), "post": _operation("post", rt, m, v3),
                             "parameters": shared}
        paths[item] = {v: _operation(v, rt, m, v3) for v in ("get", "put", "patch", "delete")}
        paths[item]["parameters"] = [_param("name", f"name of the {rt.kind}", "path", v3)] + shared
    return paths


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _key(rts: list[ResourceType]) -> tuple:
    return tuple((rt.plural, rt.kind, rt.namespaced, rt.crd, id(rt.schema)) for rt in rts)


class OpenAPI:
    """The documents of one double, rebuilt only when the kinds of a group-version change."""

    def __init__(self, registry: Registry, server_version: str, git_version: str):
        self.registry = registry
        self.server_version = server_version
        self.git_version = git_version
        self._lock = threading.Lock()
        # cache key -> (rts kept alive so their schema ids stay unique, body bytes, etag)
        self._docs: dict[Any, tuple[list, bytes, str]] = {}

    def _cached(self, key: Any, identity: tuple, rts: list, build) -> tuple[bytes, str]:
        with self._lock:
            hit = self._docs.get(key)
            if hit and _key(hit[0]) == identity:
                return hit[1], hit[2]
        body = json.dumps(build(), separators=(",", ":"), sort_keys=True).encode()
        etag = hashlib.sha512(body).hexdigest().upper()
        with self._lock:
            self._docs[key] = (rts, body, etag)
        return body, etag

    def _by_gv(self) -> dict[str, list[ResourceType]]:
        out: dict[str, list[ResourceType]] = {}
        for rt in sorted(self.registry.all(), key=lambda r: (r.group, r.version, r.plural)):
            if rt.crd or definition_name(self.server_version, rt.group, rt.version, rt.kind):
                out.setdefault(_gv_path(rt.group, rt.version), []).append(rt)
        return out

    def v3_index(self) -> tuple[bytes, str]:
        entries = {}
        for gv, rts in self._by_gv().items():
            _, etag = self._v3(gv, rts)
            entries[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={etag}"}
        body = json.dumps({"paths": entries}, separators=(",", ":"), sort_keys=True).encode()
        return body, hashlib.sha512(body).hexdigest().upper()

    def v3_document(self, gv: str) -> tuple[bytes, str] | None:
        rts = self._by_gv().get(gv)
        return self._v3(gv, rts) if rts else None

    def _models(self, rts: list[ResourceType]) -> dict[ResourceType, str]:
        return {rt: crd_definition_name(rt) if rt.crd else
                definition_name(self.server_version, rt.group, rt.version, rt.kind) for rt in rts}

    def _v3(self, gv: str, rts: list[ResourceType]) -> tuple[bytes, str]:
        def build() -> dict:
            defs = _converted_defs(self.server_version, True)
            models = self._models(rts)
            schemas = _closure([m for rt, m in models.items() if not rt.crd] + [_OBJECT_META], defs)
            for rt in rts:
                if rt.crd:
                    schemas[models[rt]] = _crd_model(rt, True)
            return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": self.git_version},
                    "paths": _paths(rts, models, True), "components": {"schemas": schemas}}
        return self._cached(("v3", gv), _key(rts), rts, build)

    def v2_document(self) -> tuple[bytes, str]:
        rts = [rt for group in self._by_gv().values() for rt in group]

        def build() -> dict:
            models = self._models(rts)
            definitions_ = dict(_converted_defs(self.server_version, False))
            for rt in rts:
                if rt.crd:
                    definitions_[models[rt]] = _crd_model(rt, False)
            return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": self.git_version},
                    "paths": _paths(rts, models, False), "definitions": definitions_}
        return self._cached("v2", _key(rts), rts, build)


    def v2_protobuf(self) -> tuple[bytes, str]:
        """The v2 document as gnostic's protobuf (openapi_pb.py), encoded once per JSON version."""
        body, etag = self.v2_document()
        with self._lock:
            hit = self._docs.get("v2pb")
            if hit and hit[2] == etag:
                return hit[1], etag
        encoded = openapi_pb.document(json.loads(body))
        with self._lock:
            self._docs["v2pb"] = ([], encoded, etag)
        return encoded, etag


# -- content negotiation (kube-openapi's handler and handler3) ----------------------------------

_JSON_TYPES = (("application", "json"),)


def v2_media(accept: str | None) -> str | None:
    """What /openapi/v2 answers for an Accept header: "protobuf", "json", or None (406), by the
    first clause in q order that names one of them (kube-openapi pkg/handler: JSON and the
    gnostic protobuf are the types it serves)."""
    for _, _, (typ, sub) in _clauses(accept):
        if f"{typ}/{sub}" in (openapi_pb.MEDIA_TYPE, openapi_pb.RETURNED_TYPE):
            return "protobuf"
        if typ in ("application", "*") and sub in ("json", "*"):
            return "json"
    return None


def _clauses(accept: str | None) -> list:
    clauses = []
    for n, part in enumerate((accept or "*/*").split(",")):
        media, _, params = part.strip().partition(";")
        q = 1.0
        m = re.search(r"q=([0-9.]+)", params)
        if m:
            q = float(m.group(1))
        if "/" in media and q > 0:
            clauses.append((-q, n, media.strip().split("/", 1)))
    return sorted(clauses)


def accepts_json(accept: str | None) -> bool:
    """True when some clause of Accept (in q order) allows application/json; the real handler
    walks the clauses the same way and answers 406 when none matches a type it can produce."""
    for _, _, (typ, sub) in _clauses(accept):
        if (typ in ("application", "*")) and sub in ("json", "*"):
            return True
    return False
