"""REST semantics of the resource endpoints: what GET/LIST/POST/PUT/PATCH/DELETE do.

Transport-free: the server parses HTTP into a ``Call`` and this module answers with
``(status_code, body)`` or raises ``ApiError``. Every write goes through one path
(``_commit``): kind/namespace checks, status-subresource rules, defaults, schema
validation, admission, managedFields, then the store (skipped for ``dryRun=All``, after
every check has run). A kind served in two versions is stored in one (``resources.to_storage``)
and read back in the version asked for (``resources.from_storage``, on every read and answer).
What depends on the server's minor is decided here too: ``fieldValidation`` (honoured from 1.25,
ignored before) and the watch-list ListOptions (``validate_list_options``). Watch streaming,
exec and logs are transport concerns and live in ``server.py``; controllers bypass this module
and write to the store directly.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

import yaml

from . import admission, apply as ssa, patch as patches, table, reviews
from .auth import User
from .defaults import apply_defaults
from .openapi import schema_for, server_minor
from .resources import Registry, ResourceType, from_storage, to_storage
from .selectors import parse_field_selector, parse_label_selector, selector_string
from .status import (ApiError, bad_request, conflict, forbidden_field, go_quote, invalid, invalid_value,
                     not_found, required_value, status_body, unsupported_media_type, unsupported_value)
from .store import Store, now_rfc3339
from .validation import FIELD_VALIDATION, Decoding, duplicate_fields, empty_status, validate

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")
# custom resources have no strategic merge keys: apiextensions-apiserver leaves it out
CR_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml")
BODY_TYPES = ("application/json", "application/yaml")
PROTOBUF = "application/vnd.kubernetes.protobuf"
# DIFFERENCE from the real server: it decodes protobuf for built-in kinds (kubectl create
# configmap/secret/namespace sends it); no maintained Python library carries the Kubernetes
# message definitions, so the double refuses it and says what to send instead.
PROTOBUF_DETAIL = (f"the Kubernetes API double cannot decode {PROTOBUF} bodies: send the object as JSON or "
                   "YAML, e.g. write it to a file and use kubectl apply -f")


@dataclass
class Call:
    verb: str
    rt: ResourceType
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    user: User | None = None
    user_agent: str = ""
    body: bytes = b""
    content_type: str = ""
    warnings: list[str] = field(default_factory=list)   # sent back as Warning headers

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    @property
    def manager(self) -> str:
        if self.query.get("fieldManager"):
            return self.query["fieldManager"]
        # the real server names an unnamed manager after the client's user agent
        return (self.user_agent.split("/")[0] or "unknown")[:128]

    def object_body(self) -> Any:
        """A create/update body, decoded as its content type says (JSON when it says nothing)."""
        ctype = self.content_type.split(";")[0].strip().lower() or "application/json"
        if ctype == "application/json":
            return self.json_body()
        if ctype == "application/yaml":
            try:
                return yaml.safe_load(self.body or b"")
            except yaml.YAMLError as e:
                raise bad_request(f"error converting YAML to JSON: {e}") from e
        raise unsupported_media_type(BODY_TYPES if self.rt.crd else BODY_TYPES + (PROTOBUF,),
                                     PROTOBUF_DETAIL if ctype == PROTOBUF and not self.rt.crd else "")

    def decoding(self, options: str, patch: bool = False, minor: int = 33) -> Decoding:
        """The ``fieldValidation`` directive (422 on an unknown one, as ValidateFieldValidation
        does for ``options``: CreateOptions, UpdateOptions, PatchOptions) and the body's duplicates.

        Before 1.25 the ServerSideFieldValidation gate was alpha and off: the server validated the
        value, then discarded it and decoded as Ignore (unknown fields dropped without a warning,
        Strict not honoured; the 1.23/1.24 OpenAPI describe the parameter so)."""
        directive = self.query.get("fieldValidation", "")
        if directive not in ("", *FIELD_VALIDATION):
            raise invalid(options, "meta.k8s.io", "", [unsupported_value(
                "fieldValidation", directive, sorted(("", *FIELD_VALIDATION)))])
        if minor < 25:
            directive = "Ignore"
        json_body = self.content_type.split(";")[0].strip().lower() in ("", "application/json",
                                                                         "application/merge-patch+json",
                                                                         "application/strategic-merge-patch+json")
        return Decoding(directive or "Warn", duplicate_fields(self.body) if json_body else [], patch, self.warnings)

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as e:
            raise bad_request(f"the body of the request could not be decoded as JSON: {e}") from e


def _meta_details(rt: ResourceType, obj: dict) -> dict:
    return {"name": obj["metadata"].get("name", ""), "group": rt.group, "kind": rt.plural,
            "uid": obj["metadata"].get("uid", "")}


# The WatchList gate of kube-apiserver: the sendInitialEvents option exists from 1.27 (alpha, off),
# and the gate is on by default from 1.32 (beta); before 1.27 a watch may not name resourceVersionMatch.
WATCH_LIST_OPTION, WATCH_LIST_ON = 27, 32


def validate_list_options(query: Mapping[str, str], watch: bool, minor: int = 33) -> None:
    """422 for the ListOptions a real server refuses, with its messages (apimachinery
    pkg/apis/meta/internalversion/validation/validation.go of the server's minor: before 1.27 a
    watch with resourceVersionMatch is refused and sendInitialEvents is an unknown parameter,
    ignored; 1.27-1.31 refuse sendInitialEvents on a watch (WatchList gate off); 1.32+ accept it).
    client-go (kubectl wait, rollout status) answers such a 422 by falling back to list+watch."""
    match, rv = query.get("resourceVersionMatch", ""), query.get("resourceVersion", "")
    initial, cont = query.get("sendInitialEvents"), query.get("continue", "")
    if minor < WATCH_LIST_OPTION:
        initial = None
    causes = []
    if watch and minor < WATCH_LIST_OPTION:
        if match:
            causes.append(forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden for watch"))
        watch = False  # then the list rules, as the old ValidateListOptions ran them for both
    if watch:
        if initial is not None and match != "NotOlderThan":
            causes.append(forbidden_field("resourceVersionMatch",
                                          "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
        if initial is not None and minor < WATCH_LIST_ON:
            causes.append(forbidden_field("sendInitialEvents", "sendInitialEvents is forbidden for watch unless the "
                                                               "WatchList feature gate is enabled"))
        if match:
            if initial is None:
                causes.append(forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden for watch "
                                                                      "unless sendInitialEvents is provided"))
            if match != "NotOlderThan":
                causes.append(unsupported_value("resourceVersionMatch", match, ["NotOlderThan"]))
            if cont:
                causes.append(forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"))
    else:
        if match:
            if not rv:
                causes.append(forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"))
            if cont:
                causes.append(forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden when continue is provided"))
            if match not in ("Exact", "NotOlderThan"):
                causes.append(unsupported_value("resourceVersionMatch", match, ["Exact", "NotOlderThan", ""]))
            if match == "Exact" and rv == "0":
                causes.append(forbidden_field("resourceVersionMatch", 'resourceVersionMatch "exact" is forbidden for resourceVersion "0"'))
        if initial is not None:
            causes.append(forbidden_field("sendInitialEvents", "sendInitialEvents is forbidden for list"))
    if causes:
        raise invalid("ListOptions", "meta.k8s.io", "", causes)


class Api:
    def __init__(self, store: Store, registry: Registry, server_version: str):
        self.store = store
        self.registry = registry
        self.server_version = server_version
        self.minor = server_minor(server_version)

    @staticmethod
    def view(rt: ResourceType, obj: dict) -> dict:
        """A stored object as a client of ``rt`` reads it (the watch stream uses it too)."""
        return from_storage(rt, obj)

    # -- reads ------------------------------------------------------------------------------
    def get(self, call: Call) -> dict:
        obj = self.store.get(call.rt.gr, call.namespace, call.name)
        if obj is None:
            raise not_found(call.rt.plural, call.rt.group, call.name)
        if call.subresource == "scale":
            return self._scale_view(call.rt, obj)
        return self.view(call.rt, obj)

    def printer(self, rt: ResourceType):
        """The Table columns of a custom resource's version (None for built-ins: table.py has them)."""
        if not rt.crd:
            return None
        crd = self.store.get(("apiextensions.k8s.io", "customresourcedefinitions"), "", f"{rt.plural}.{rt.group}") or {}
        version = next((v for v in (crd.get("spec") or {}).get("versions") or [] if v.get("name") == rt.version), {})
        return table.crd_printer(version.get("additionalPrinterColumns"))

    def predicate(self, call: Call):
        labels = parse_label_selector(call.query.get("labelSelector"))
        fields = parse_field_selector(call.query.get("fieldSelector"), call.rt.plural, call.rt.kind)
        return lambda o: labels(o["metadata"].get("labels") or {}) and fields(o)

    def list(self, call: Call) -> dict:
        validate_list_options(call.query, watch=False, minor=self.minor)
        ns = call.namespace if call.rt.namespaced and call.namespace else None
        items, rv = self.store.list(call.rt.gr, ns, self.predicate(call))
        items = [self.view(call.rt, o) for o in items]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = int(call.query.get("limit") or 0)
        start = 0
        if call.query.get("continue"):
            try:
                start = json.loads(base64.b64decode(call.query["continue"]))["offset"]
            except (ValueError, KeyError) as e:
                raise bad_request("continue key is not valid") from e
        if limit or start:
            rest = items[start:]
            items = rest[:limit] if limit else rest
            if limit and len(rest) > limit:
                meta["continue"] = base64.b64encode(json.dumps({"offset": start + limit}).encode()).decode()
                meta["remainingItemCount"] = len(rest) - limit
        return {"kind": call.rt.kind + "List", "apiVersion": call.rt.api_version, "metadata": meta,
                "items": items}

    # -- writes -----------------------------------------------------------------------------
    def create(self, call: Call) -> tuple[int, dict]:
        decoding = call.decoding("CreateOptions", minor=self.minor)
        if call.rt.gr in reviews.KINDS:  # answered, never stored; `kubectl auth` sends them as protobuf
            body = reviews.decode_protobuf(call.rt.gr, call.body) \
                if call.content_type.split(";")[0].strip().lower() == PROTOBUF else call.object_body()
            return 201, reviews.review(self.store, call.rt.gr, body, call.user, call.namespace)
        body = call.object_body()
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        obj = self._commit(call, body, None, decoding=decoding)
        return 201, obj

    def update(self, call: Call) -> tuple[int, dict]:
        decoding = call.decoding("UpdateOptions", minor=self.minor)
        body = call.object_body()
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        with self.store.lock:  # a PUT without resourceVersion must not lose a concurrent write
            return self._update_locked(call, body, decoding)

    def _update_locked(self, call: Call, body: dict, decoding: Decoding) -> tuple[int, dict]:
        old = self._existing(call)
        if call.subresource == "scale":
            return 200, self._scale(call, old, body)
        name = (body.get("metadata") or {}).get("name")
        if name and name != call.name:
            raise bad_request(f"the name of the object ({name}) does not match the name on the URL ({call.name})")
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise conflict(call.rt.plural, call.rt.group, call.name)
        return 200, self._commit(call, body, old, decoding=decoding)

    def patch(self, call: Call) -> tuple[int, dict]:
        ctype = call.content_type.split(";")[0].strip()
        accepted = CR_PATCH_TYPES if call.rt.crd else PATCH_TYPES
        if ctype not in accepted:
            raise unsupported_media_type(accepted)
        decoding = call.decoding("PatchOptions", patch=True, minor=self.minor)
        if ctype == "application/apply-patch+yaml":
            return self._apply(call, decoding)
        body = call.json_body()
        with self.store.lock:  # the real server retries a patch on conflict; holding the lock is the same
            return self._patch_locked(call, ctype, body, decoding)

    def _patch_locked(self, call: Call, ctype: str, body: Any, decoding: Decoding) -> tuple[int, dict]:
        old = self._existing(call)
        base = self._scale_view(call.rt, old) if call.subresource == "scale" else old
        try:
            if ctype == "application/json-patch+json":
                new = patches.json_patch(base, body)
            elif ctype == "application/merge-patch+json":
                new = patches.merge_patch(base, body)
            else:
                schema = None if call.subresource == "scale" else schema_for(call.rt, self.server_version)
                new = patches.strategic_merge(base, body, schema)
        except patches.PatchError as e:
            if e.code == 400:
                raise bad_request(str(e)) from e
            raise ApiError(422, "Invalid", str(e), {"name": call.name, "group": call.rt.group,
                                                     "kind": call.rt.kind}) from e
        if not isinstance(new, dict):
            raise bad_request("the patch did not produce an object")
        if call.subresource == "scale":
            return 200, self._scale(call, old, new)
        want_rv = (new.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise conflict(call.rt.plural, call.rt.group, call.name)
        return 200, self._commit(call, new, old, decoding=decoding)

    def _apply(self, call: Call, decoding: Decoding) -> tuple[int, dict]:
        if not call.query.get("fieldManager"):
            raise ApiError(422, "Invalid",
                           'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: '
                           "is required for apply patch",
                           {"group": "meta.k8s.io", "kind": "PatchOptions",
                            "causes": [required_value("fieldManager", "is required for apply patch")]})
        try:
            applied = yaml.safe_load(call.body or b"") or {}
        except yaml.YAMLError as e:
            raise bad_request(f"error decoding YAML: {e}") from e
        if not isinstance(applied, dict):
            raise bad_request("apply patch must be an object")
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise bad_request(f'invalid object type: {applied.get("apiVersion", "")}, Kind={applied.get("kind", "")}')
        meta = applied.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != call.name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({call.name})")
        meta["name"] = call.name
        if call.rt.namespaced:
            meta.setdefault("namespace", call.namespace)
        force = call.query.get("force") in ("true", "True", "1")
        with self.store.lock:
            live = self.store.get(call.rt.gr, call.namespace, call.name)
            live = None if live is None else self.view(call.rt, live)
            if live is None and call.subresource:
                raise not_found(call.rt.plural, call.rt.group, call.name)
            if live is not None and meta.get("resourceVersion") and meta["resourceVersion"] != live["metadata"]["resourceVersion"]:
                raise conflict(call.rt.plural, call.rt.group, call.name)
            meta.pop("resourceVersion", None)
            status_write = call.subresource == "status"
            if call.rt.has_status and not status_write:
                applied.pop("status", None)
            try:
                merged = ssa.server_side_apply(live, applied, call.manager, force, call.rt.api_version,
                                               call.subresource, include_status=status_write or not call.rt.has_status,
                                               schema=schema_for(call.rt, self.server_version))
            except ssa.ApplyConflict as e:
                causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": p}
                          for m, p in e.conflicts]
                raise ApiError(409, "Conflict", str(e), {"causes": causes}) from e
            obj = self._commit(call, merged, live, managed_done=True,
                               decoding=decoding)
            return (201 if live is None else 200), obj

    def _existing(self, call: Call) -> dict:
        old = self.store.get(call.rt.gr, call.namespace, call.name)
        if old is None:
            raise not_found(call.rt.plural, call.rt.group, call.name)
        return self.view(call.rt, old)

    def _commit(self, call: Call, body: dict, old: dict | None, managed_done: bool = False,
                decoding: Decoding | None = None) -> dict:
        """The single write path: checks, defaults, validation, admission, managedFields, store."""
        rt = call.rt
        obj = copy.deepcopy(body)
        if obj.get("apiVersion", rt.api_version) != rt.api_version or obj.get("kind", rt.kind) != rt.kind:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                              f"expected API version ({rt.api_version})"
                              if obj.get("apiVersion") != rt.api_version else
                              f"the kind in the data ({obj.get('kind')}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != call.namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = call.namespace
        else:
            meta.pop("namespace", None)
        if old is not None:
            meta["name"] = old["metadata"]["name"]
            # the client's copy of managedFields is not trusted: ownership is the server's record
            meta["managedFields"] = copy.deepcopy(old["metadata"].get("managedFields") or []) if not managed_done else meta.get("managedFields", [])
            if not meta["managedFields"]:
                meta.pop("managedFields")
        elif not managed_done:
            meta.pop("managedFields", None)

        if rt.has_status:
            if call.subresource == "status":
                # a status write changes .status only
                status = obj.get("status")
                obj = copy.deepcopy(old)
                if status is None:
                    obj.pop("status", None)
                else:
                    obj["status"] = status
                if managed_done:
                    obj["metadata"]["managedFields"] = meta.get("managedFields", [])
            elif old is not None:
                if "status" in old:
                    obj["status"] = copy.deepcopy(old["status"])
                else:
                    obj.pop("status", None)
            else:
                obj.pop("status", None)
        if old is None and rt.gr == ("", "pods"):
            obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj)}

        apply_defaults(rt.group, rt.plural, obj)
        obj = validate(rt, obj, self.server_version, old, decoding)
        if rt.has_status and not rt.crd and "status" not in obj:
            # a built-in kind's status is a Go struct: the real server always writes "status": {...}
            obj["status"] = empty_status(rt, self.server_version)
        with self.store.lock:
            if old is not None:
                current = self.store.get(rt.gr, call.namespace, call.name)
                if current is None:
                    raise not_found(rt.plural, rt.group, call.name)
                if current["metadata"]["resourceVersion"] != old["metadata"]["resourceVersion"]:
                    raise conflict(rt.plural, rt.group, call.name)
            if old is not None:
                deletion_update_rules(rt, obj, old)
            else:  # rest.BeforeCreate: a new object is never being deleted
                for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                    obj["metadata"].pop(k, None)
            admission.admit(self.store, rt, obj, old)
            if not managed_done:
                ssa.record_update(old, obj, call.manager, rt.api_version, call.subresource,
                                  include_status=call.subresource == "status" or not rt.has_status,
                                  schema=schema_for(rt, self.server_version))
            stored = to_storage(rt, obj, self.registry.storage(rt))
            if old is None:
                saved = self.store.create(rt.gr, stored, namespace=call.namespace if rt.namespaced else "",
                                          dry_run=call.dry_run)
            else:
                saved = self._replace(rt.gr, stored, old, dry_run=call.dry_run)
            return self.view(rt, saved)

    # -- scale subresource ------------------------------------------------------------------
    # As pkg/registry/apps/deployment/storage/storage.go (scaleFromDeployment, scaleUpdatedObjectInfo):
    # the Scale's resourceVersion is the object's, and a PUT/PATCH carrying a stale one is a 409.
    @staticmethod
    def _scale_view(rt: ResourceType, obj: dict) -> dict:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        replicas = spec.get("replicas", 0)
        out_status: dict[str, Any] = {"replicas": status.get("replicas", 0)}
        selector = selector_string(spec.get("selector"))
        if selector:
            out_status["selector"] = selector
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                             "creationTimestamp") if k in obj["metadata"]},
                # autoscaling/v1 ScaleSpec.replicas is omitempty: a Scale at 0 has "spec": {}
                "spec": {"replicas": replicas} if replicas else {},
                "status": out_status}

    def _scale(self, call: Call, old: dict, scale: dict) -> dict:
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise invalid("Scale", "autoscaling", call.name,
                          [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                            "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}])
        want_rv = (scale.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise conflict(call.rt.plural, call.rt.group, call.name)
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = replicas
        sub = Call("update", call.rt, call.namespace, call.name, "", call.query, call.user, call.user_agent)
        return self._scale_view(call.rt, self._commit(sub, new, old))

    # -- delete -----------------------------------------------------------------------------
    # As staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go (Delete,
    # updateForGracefulDeletionAndFinalizers, deletionFinalizersForGarbageCollection) and
    # registry/rest/delete.go (BeforeDelete): an object with finalizers, or a pod with a grace
    # period, is only marked (deletionTimestamp) and stays readable; the garbage collector,
    # namespace controller and kubelet (controllers/gc.py, namespace.py, kubelet.py) finish it.
    def delete(self, call: Call) -> tuple[int, dict]:
        opts = self._delete_options(call)
        gone, obj = self.delete_object(call.rt, call.namespace, call.name, opts, dry_run=call.dry_run)
        # handlers/delete.go: 202 only when not deleted at once and orphanDependents=false was asked
        code = 202 if not gone and opts.get("orphanDependents") is False else 200
        return code, self._delete_response(call.rt, self.view(call.rt, obj), gone)

    def delete_collection(self, call: Call) -> tuple[int, dict]:
        opts = self._delete_options(call)
        listing = self.list(call)
        for item in listing["items"]:
            try:
                self.delete_object(call.rt, item["metadata"].get("namespace", ""), item["metadata"]["name"],
                                   copy.deepcopy(opts), dry_run=call.dry_run)
            except ApiError as e:
                if e.code != 404:
                    raise
        # store.go DeleteCollection answers with the list as it was before the deletes
        return 200, listing

    @staticmethod
    def _delete_options(call: Call) -> dict:
        """DeleteOptions from the body and the query (query wins, as the real decoder merges them)."""
        body = call.json_body() if call.body else {}
        opts = dict(body) if isinstance(body, dict) else {}
        q = call.query
        if q.get("gracePeriodSeconds") not in (None, ""):
            try:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            except ValueError as e:
                raise bad_request(f"gracePeriodSeconds: invalid value {q['gracePeriodSeconds']!r}") from e
        if q.get("propagationPolicy"):
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("orphanDependents") in ("true", "false"):
            opts["orphanDependents"] = q["orphanDependents"] == "true"
        # validation.ValidateDeleteOptions (apimachinery/pkg/apis/meta/v1/validation)
        causes = []
        policy = opts.get("propagationPolicy")
        if policy is not None and opts.get("orphanDependents") is not None:
            causes.append(invalid_value("propagationPolicy", policy,
                                        "orphanDependents and deletionPropagation cannot be both set"))
        if policy is not None and policy not in PROPAGATION_POLICIES:
            causes.append(unsupported_value("propagationPolicy", policy, [*PROPAGATION_POLICIES, "nil"]))
        if causes:
            raise invalid("DeleteOptions", "meta.k8s.io", "", causes)
        return opts

    def delete_object(self, rt: ResourceType, namespace: str, name: str, opts: dict,
                      dry_run: bool = False) -> tuple[bool, dict]:
        """One DELETE with DeleteOptions ``opts``: (deleted now?, the object's last or marked state).

        Clients come here through ``delete``; the garbage collector, namespace controller and
        kubelet call it directly, as the real ones send a DELETE to the API.
        """
        with self.store.lock:
            obj = self.store.get(rt.gr, namespace, name)
            if obj is None:
                raise not_found(rt.plural, rt.group, name)
            _check_preconditions(rt, obj, opts.get("preconditions") or {})
            if rt.gr == ("", "namespaces"):
                return self._delete_namespace(rt, obj, dry_run)
            if rt.gr == ("apiextensions.k8s.io", "customresourcedefinitions") and not dry_run:
                self._delete_custom_resources(obj)
            work = copy.deepcopy(obj)
            meta = work["metadata"]
            graceful, pending, grace = _before_delete(rt, work, opts)
            if pending:
                return False, obj
            changed, finalizers = _gc_finalizers(rt, meta, opts)
            if changed:
                meta["finalizers"] = finalizers
            if not graceful and not changed and not finalizers:
                return True, self.store.delete(rt.gr, namespace, name, dry_run=dry_run)
            if not graceful:
                _mark_deleting(meta)
            if not meta.get("finalizers"):
                meta.pop("finalizers", None)
            marked = self.store.replace(rt.gr, work, dry_run=dry_run)
            if finalizers or grace > 0:
                return False, marked
            return True, (marked if dry_run else self.store.delete(rt.gr, namespace, name))

    def _delete_namespace(self, rt: ResourceType, ns: dict, dry_run: bool) -> tuple[bool, dict]:
        # pkg/registry/core/namespace/storage/storage.go Delete: the first DELETE only starts
        # termination; later ones are refused while spec.finalizers (the namespace controller's
        # "kubernetes") remain
        name = ns["metadata"]["name"]
        if not ns["metadata"].get("deletionTimestamp"):
            work = copy.deepcopy(ns)
            work["metadata"]["deletionTimestamp"] = now_rfc3339()
            work["metadata"]["deletionGracePeriodSeconds"] = 0
            work.setdefault("status", {})["phase"] = "Terminating"
            return False, self.store.replace(rt.gr, work, dry_run=dry_run)
        if (ns.get("spec") or {}).get("finalizers"):
            raise ApiError(409, "Conflict",
                           f'Operation cannot be fulfilled on namespaces "{name}": The system is ensuring all '
                           "content is removed from this namespace.  Upon completion, this namespace will "
                           "automatically be purged by the system.",
                           {"name": name, "group": "", "kind": "namespaces"})
        if ns["metadata"].get("finalizers"):
            return False, ns
        return True, self.store.delete(rt.gr, "", name, dry_run=dry_run)

    def _delete_custom_resources(self, crd: dict) -> None:
        # SIMPLIFIED: the real CRD waits, Terminating, with the customresourcecleanup finalizer
        # until its instances are gone; here the instances get a DELETE each (their finalizers
        # hold them) and the CRD goes at once
        spec = crd.get("spec") or {}
        cr_gr = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
        cr_rt = self.registry.by_gr(*cr_gr)
        items, _ = self.store.list(cr_gr)
        for item in items:
            if cr_rt is None:
                self.store.delete(cr_gr, item["metadata"].get("namespace", ""), item["metadata"]["name"])
            elif not item["metadata"].get("deletionTimestamp"):
                self.delete_object(cr_rt, item["metadata"].get("namespace", ""), item["metadata"]["name"],
                                   {"propagationPolicy": "Background"})

    def write_meta(self, gr: tuple[str, str], namespace: str, name: str, fn) -> dict | None:
        """A controller's update of an object's metadata (finalizers, ownerReferences), with the
        update path's rule that removing the last finalizer of a deleted object removes it."""
        with self.store.lock:
            old = self.store.get(gr, namespace, name)
            if old is None:
                return None
            work = copy.deepcopy(old)
            if fn(work) is False:
                return old
            if not work["metadata"].get("finalizers"):
                work["metadata"].pop("finalizers", None)
            return self._replace(gr, work, old, dry_run=False)

    def _replace(self, gr: tuple[str, str], obj: dict, old: dict, dry_run: bool) -> dict:
        # store.go Update: ShouldDeleteDuringUpdate (the last finalizer of an object marked for
        # deletion with no pending grace period went) deletes instead and answers with the update
        if _emptied_finalizers(old, obj):
            if not dry_run:
                self.store.delete(gr, old["metadata"].get("namespace", ""), old["metadata"]["name"])
            return obj
        return self.store.replace(gr, obj, dry_run=dry_run)

    @staticmethod
    def _delete_response(rt: ResourceType, obj: dict, gone: bool) -> dict:
        # An object kept (finalizers, grace period, Terminating namespace) is answered whole; one
        # deleted at once by the object (registries with ReturnDeletedObject: pods, services,
        # namespaces, custom resources) or a Success Status (store.go finalizeDelete).
        if not gone or rt.gr in (("", "pods"), ("", "services"), ("", "namespaces")) or rt.crd:
            return obj
        return status_body(200, "", "", _meta_details(rt, obj))


PROPAGATION_POLICIES = ("Foreground", "Background", "Orphan")
ORPHAN_FINALIZER, FOREGROUND_FINALIZER = "orphan", "foregroundDeletion"
# DefaultGarbageCollectionPolicy OrphanDependents: batch/v1 Jobs, for backwards compatibility
# (pkg/registry/batch/job/strategy.go); clients that want the pods gone say Background (kubectl does)
_ORPHAN_BY_DEFAULT = {("batch", "jobs")}


def _rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def _check_preconditions(rt: ResourceType, obj: dict, pre: dict) -> None:
    # rest.BeforeDelete: the resource in these messages is the Kind, as the real code passes gvk.Kind
    qual = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
    meta, name = obj["metadata"], obj["metadata"]["name"]
    if pre.get("uid") and pre["uid"] != meta["uid"]:
        detail = (f"the UID in the precondition ({pre['uid']}) does not match the UID in record ({meta['uid']}). "
                  "The object might have been deleted and then recreated")
    elif pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
        detail = (f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not match the "
                  f"ResourceVersion in record ({meta['resourceVersion']}). The object might have been modified")
    else:
        return
    raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qual} "{name}": {detail}',
                   {"name": name, "group": rt.group, "kind": rt.kind})


def _before_delete(rt: ResourceType, obj: dict, opts: dict) -> tuple[bool, bool, int]:
    """rest.BeforeDelete with the pod strategy's CheckGracefulDelete: (graceful, pending, grace).

    Edits ``obj``'s metadata in place. Only pods delete gracefully among the double's kinds.
    """
    meta = obj["metadata"]
    grace = opts.get("gracePeriodSeconds")
    if grace is not None and grace < 0:
        grace = 1
    if rt.gr != ("", "pods"):
        return False, False, 0
    if meta.get("deletionTimestamp"):
        current = meta.get("deletionGracePeriodSeconds")
        if not current:
            return False, False, 0
        if grace is None or grace >= current:
            return False, True, current
        # only a shorter grace period may be given once deletion started
        start = _parse_time(meta["deletionTimestamp"]) - timedelta(seconds=current)
        meta["deletionTimestamp"] = _rfc3339(start + timedelta(seconds=grace))
        meta["deletionGracePeriodSeconds"] = grace
        return True, False, grace
    # pkg/registry/core/pod/strategy.go CheckGracefulDelete: an unscheduled or finished pod goes at once
    spec, phase = obj.get("spec") or {}, (obj.get("status") or {}).get("phase")
    period = grace if grace is not None else int(spec.get("terminationGracePeriodSeconds") or 0)
    if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
        period = 0
    meta["deletionTimestamp"] = _rfc3339(datetime.now(timezone.utc) + timedelta(seconds=period))
    meta["deletionGracePeriodSeconds"] = period
    if meta.get("generation"):
        meta["generation"] += 1
    return True, False, period


def _gc_finalizers(rt: ResourceType, meta: dict, opts: dict) -> tuple[bool, list[str]]:
    """store.go deletionFinalizersForGarbageCollection: the orphan / foregroundDeletion finalizer
    the propagation policy asks for (options first, then the object's own, then the kind's default)."""
    current = list(meta.get("finalizers") or [])
    orphan_opt, policy = opts.get("orphanDependents"), opts.get("propagationPolicy")
    if orphan_opt is not None:
        orphan, foreground = orphan_opt, False
    elif policy is not None:
        orphan, foreground = policy == "Orphan", policy == "Foreground"
    elif ORPHAN_FINALIZER in current or FOREGROUND_FINALIZER in current:
        orphan, foreground = ORPHAN_FINALIZER in current, FOREGROUND_FINALIZER in current and ORPHAN_FINALIZER not in current
    else:
        orphan, foreground = rt.gr in _ORPHAN_BY_DEFAULT, False
    new = [f for f in current if f not in (ORPHAN_FINALIZER, FOREGROUND_FINALIZER)]
    if orphan:
        new.append(ORPHAN_FINALIZER)
    if foreground:
        new.append(FOREGROUND_FINALIZER)
    if set(new) == set(current):
        return False, current
    return True, new


def _mark_deleting(meta: dict) -> None:
    # store.go markAsDeleting: a kind without graceful deletion is marked "now", grace 0
    if not meta.get("deletionTimestamp") and meta.get("generation"):
        meta["generation"] += 1
    now = datetime.now(timezone.utc)
    if not meta.get("deletionTimestamp") or _parse_time(meta["deletionTimestamp"]) > now:
        meta["deletionTimestamp"] = _rfc3339(now)
    meta["deletionGracePeriodSeconds"] = 0


def _emptied_finalizers(old: dict, new: dict) -> bool:
    """store.go ShouldDeleteDuringUpdate."""
    om, nm = old["metadata"], new["metadata"]
    return (not nm.get("finalizers") and bool(om.get("finalizers")) and bool(om.get("deletionTimestamp"))
            and not om.get("deletionGracePeriodSeconds"))


def deletion_update_rules(rt: ResourceType, obj: dict, old: dict) -> None:
    """The update path's rules for a deleted object (rest.BeforeUpdate, ValidateObjectMetaUpdate):
    deletionTimestamp and deletionGracePeriodSeconds cannot be set, changed or removed by a
    client, and no finalizer can be added once deletion started."""
    meta, om = obj["metadata"], old["metadata"]
    name = om["name"]
    if om.get("deletionTimestamp"):
        meta["deletionTimestamp"] = om["deletionTimestamp"]
        if "deletionGracePeriodSeconds" in om and meta.get("deletionGracePeriodSeconds") is None:
            meta["deletionGracePeriodSeconds"] = om["deletionGracePeriodSeconds"]
        added = sorted(set(meta.get("finalizers") or []) - set(om.get("finalizers") or []))
        if added:
            listed = ", ".join(go_quote(f) for f in added)
            raise invalid(rt.kind, rt.group, name, [forbidden_field(
                "metadata.finalizers",
                f"no new finalizers can be added if the object is being deleted, found new finalizers []string{{{listed}}}")])
    elif meta.get("deletionTimestamp"):
        raise invalid(rt.kind, rt.group, name,
                      [invalid_value("metadata.deletionTimestamp", meta["deletionTimestamp"], "field is immutable")])
    for k in ("deletionTimestamp", "deletionGracePeriodSeconds"):
        if meta.get(k) is None:
            meta.pop(k, None)


def _qos_class(pod: dict) -> str:
    containers = (pod.get("spec") or {}).get("containers") or []
    reqs = [((c.get("resources") or {}).get("requests") or {}) for c in containers if isinstance(c, dict)]
    lims = [((c.get("resources") or {}).get("limits") or {}) for c in containers if isinstance(c, dict)]
    if not any(reqs) and not any(lims):
        return "BestEffort"
    if all(l.get("cpu") and l.get("memory") and (not r or r == {k: l[k] for k in r if k in l})
           for r, l in zip(reqs, lims)):
        return "Guaranteed"
    return "Burstable"
