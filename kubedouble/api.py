"""REST semantics of the resource endpoints: what GET/LIST/POST/PUT/PATCH/DELETE do.

Transport-free: the server parses HTTP into a ``Call`` and this module answers with
``(status_code, body)`` or raises ``ApiError``. Every write goes through one path
(``_commit``): kind/namespace checks, status-subresource rules, defaults, schema
validation, admission, managedFields, then the store (skipped for ``dryRun=All``, after
every check has run). Watch streaming, exec and logs are transport concerns and live in
``server.py``; controllers bypass this module and write to the store directly.
"""

from __future__ import annotations

import base64
import copy
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

import yaml

from . import admission, apply as ssa, patch as patches
from .auth import User
from .defaults import apply_defaults
from .resources import Registry, ResourceType
from .selectors import parse_field_selector, parse_label_selector
from .status import (ApiError, bad_request, conflict, invalid, not_found, required_value,
                     status_body, unsupported_media_type)
from .store import Store, now_rfc3339
from .validation import empty_status, validate

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json", "application/apply-patch+yaml")


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

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    @property
    def manager(self) -> str:
        if self.query.get("fieldManager"):
            return self.query["fieldManager"]
        # the real server names an unnamed manager after the client's user agent
        return (self.user_agent.split("/")[0] or "unknown")[:128]

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as e:
            raise bad_request(f"the body of the request could not be decoded as JSON: {e}") from e


def _meta_details(rt: ResourceType, obj: dict) -> dict:
    return {"name": obj["metadata"].get("name", ""), "group": rt.group, "kind": rt.plural,
            "uid": obj["metadata"].get("uid", "")}


class Api:
    def __init__(self, store: Store, registry: Registry, server_version: str):
        self.store = store
        self.registry = registry
        self.server_version = server_version

    # -- reads ------------------------------------------------------------------------------
    def get(self, call: Call) -> dict:
        obj = self.store.get(call.rt.gr, call.namespace, call.name)
        if obj is None:
            raise not_found(call.rt.plural, call.rt.group, call.name)
        if call.subresource == "scale":
            return self._scale_view(call.rt, obj)
        return obj

    def predicate(self, call: Call):
        labels = parse_label_selector(call.query.get("labelSelector"))
        fields = parse_field_selector(call.query.get("fieldSelector"), call.rt.plural, call.rt.kind)
        return lambda o: labels(o["metadata"].get("labels") or {}) and fields(o)

    def list(self, call: Call) -> dict:
        ns = call.namespace if call.rt.namespaced and call.namespace else None
        items, rv = self.store.list(call.rt.gr, ns, self.predicate(call))
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
        body = call.json_body()
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        obj = self._commit(call, body, None)
        return 201, obj

    def update(self, call: Call) -> tuple[int, dict]:
        body = call.json_body()
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        with self.store.lock:  # a PUT without resourceVersion must not lose a concurrent write
            return self._update_locked(call, body)

    def _update_locked(self, call: Call, body: dict) -> tuple[int, dict]:
        old = self._existing(call)
        if call.subresource == "scale":
            return 200, self._scale(call, old, (body.get("spec") or {}).get("replicas"))
        name = (body.get("metadata") or {}).get("name")
        if name and name != call.name:
            raise bad_request(f"the name of the object ({name}) does not match the name on the URL ({call.name})")
        want_rv = (body.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise conflict(call.rt.plural, call.rt.group, call.name)
        return 200, self._commit(call, body, old)

    def patch(self, call: Call) -> tuple[int, dict]:
        ctype = call.content_type.split(";")[0].strip()
        if ctype not in PATCH_TYPES:
            raise unsupported_media_type(ctype)
        if ctype == "application/apply-patch+yaml":
            return self._apply(call)
        body = call.json_body()
        with self.store.lock:  # the real server retries a patch on conflict; holding the lock is the same
            return self._patch_locked(call, ctype, body)

    def _patch_locked(self, call: Call, ctype: str, body: Any) -> tuple[int, dict]:
        old = self._existing(call)
        base = self._scale_view(call.rt, old) if call.subresource == "scale" else old
        try:
            if ctype == "application/json-patch+json":
                new = patches.json_patch(base, body)
            elif ctype == "application/merge-patch+json":
                new = patches.merge_patch(base, body)
            else:
                new = patches.strategic_merge(base, body)
        except patches.PatchError as e:
            if e.code == 400:
                raise bad_request(str(e)) from e
            raise ApiError(422, "Invalid", str(e), {"name": call.name, "group": call.rt.group,
                                                     "kind": call.rt.kind}) from e
        if not isinstance(new, dict):
            raise bad_request("the patch did not produce an object")
        if call.subresource == "scale":
            return 200, self._scale(call, old, (new.get("spec") or {}).get("replicas"))
        want_rv = (new.get("metadata") or {}).get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise conflict(call.rt.plural, call.rt.group, call.name)
        return 200, self._commit(call, new, old)

    def _apply(self, call: Call) -> tuple[int, dict]:
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
                                               call.subresource, include_status=status_write or not call.rt.has_status)
            except ssa.ApplyConflict as e:
                causes = [{"reason": "FieldManagerConflict", "message": f'conflict with "{m}"', "field": p}
                          for m, p in e.conflicts]
                raise ApiError(409, "Conflict", str(e), {"causes": causes}) from e
            obj = self._commit(call, merged, live, managed_done=True)
            return (201 if live is None else 200), obj

    def _existing(self, call: Call) -> dict:
        old = self.store.get(call.rt.gr, call.namespace, call.name)
        if old is None:
            raise not_found(call.rt.plural, call.rt.group, call.name)
        return old

    def _commit(self, call: Call, body: dict, old: dict | None, managed_done: bool = False) -> dict:
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
        strict = call.query.get("fieldValidation") == "Strict"
        obj = validate(rt, obj, self.server_version, strict=strict)
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
            admission.admit(self.store, rt, obj, old)
            if not managed_done:
                ssa.record_update(old, obj, call.manager, rt.api_version, call.subresource,
                                  include_status=call.subresource == "status" or not rt.has_status)
            if old is None:
                return self.store.create(rt.gr, obj, namespace=call.namespace if rt.namespaced else "",
                                         dry_run=call.dry_run)
            return self.store.replace(rt.gr, obj, dry_run=call.dry_run)

    # -- scale subresource ------------------------------------------------------------------
    @staticmethod
    def _scale_view(rt: ResourceType, obj: dict) -> dict:
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        sel = (spec.get("selector") or {}).get("matchLabels") or {}
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {k: obj["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                             "creationTimestamp") if k in obj["metadata"]},
                "spec": {"replicas": spec.get("replicas", 0)},
                "status": {"replicas": status.get("replicas", 0),
                           "selector": ",".join(f"{k}={v}" for k, v in sel.items())}}

    def _scale(self, call: Call, old: dict, replicas: Any) -> dict:
        if not isinstance(replicas, int) or replicas < 0:
            raise invalid("Scale", "autoscaling", call.name,
                          [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                            "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}])
        new = copy.deepcopy(old)
        new["spec"]["replicas"] = replicas
        sub = Call("update", call.rt, call.namespace, call.name, "", call.query, call.user, call.user_agent)
        return self._scale_view(call.rt, self._commit(sub, new, old))

    # -- delete -----------------------------------------------------------------------------
    def delete(self, call: Call) -> tuple[int, dict]:
        opts = call.json_body() if call.body else {}
        opts = opts if isinstance(opts, dict) else {}
        rt = call.rt
        with self.store.lock:
            obj = self._existing(call)
            pre = opts.get("preconditions") or {}
            if (pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]) or \
                    (pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]):
                raise conflict(rt.plural, rt.group, call.name)
            policy = call.query.get("propagationPolicy") or opts.get("propagationPolicy")
            orphan = policy == "Orphan" or call.query.get("orphanDependents") == "true" or opts.get("orphanDependents") is True
            if call.dry_run:
                return 200, self._delete_response(rt, obj)
            if orphan:
                self._orphan_dependents(obj["metadata"]["uid"])
            if rt.gr == ("", "namespaces"):
                for gr, child in self.store.in_namespace(call.name):
                    self.store.delete(gr, call.name, child["metadata"]["name"])
            elif rt.gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
                spec = obj.get("spec") or {}
                cr_gr = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
                items, _ = self.store.list(cr_gr)
                for item in items:
                    self.store.delete(cr_gr, item["metadata"].get("namespace", ""), item["metadata"]["name"])
            last = self.store.delete(rt.gr, call.namespace, call.name)
        return 200, self._delete_response(rt, last)

    def delete_collection(self, call: Call) -> tuple[int, dict]:
        listing = self.list(call)
        deleted = []
        for item in listing["items"]:
            sub = Call("delete", call.rt, item["metadata"].get("namespace", ""), item["metadata"]["name"], "",
                       call.query, call.user, call.user_agent)
            try:
                deleted.append(self.delete(sub)[1])
            except ApiError as e:
                if e.code != 404:
                    raise
        return 200, {"kind": call.rt.kind + "List", "apiVersion": call.rt.api_version,
                     "metadata": {"resourceVersion": str(self.store.resource_version)},
                     "items": [d for d in deleted if d.get("kind") != "Status"]}

    def _orphan_dependents(self, uid: str) -> None:
        for gr, o in self.store.all_objects():
            refs = o["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                def drop(x, uid=uid):
                    x["metadata"]["ownerReferences"] = [r for r in x["metadata"]["ownerReferences"] if r.get("uid") != uid]
                    if not x["metadata"]["ownerReferences"]:
                        del x["metadata"]["ownerReferences"]
                self.store.mutate(gr, o["metadata"].get("namespace", ""), o["metadata"]["name"], drop)

    @staticmethod
    def _delete_response(rt: ResourceType, obj: dict) -> dict:
        # As the real registries do: pods, services, namespaces and custom resources answer with
        # the object (namespaces in phase Terminating), everything else with a Success Status.
        if rt.gr == ("", "namespaces"):
            out = copy.deepcopy(obj)
            out["metadata"]["deletionTimestamp"] = now_rfc3339()
            out.setdefault("status", {})["phase"] = "Terminating"
            return out
        if rt.gr in (("", "pods"), ("", "services")) or rt.crd:
            return obj
        return status_body(200, "", "", _meta_details(rt, obj))


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
