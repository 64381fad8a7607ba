"""The review kinds: create-only, never stored, answered from the caller's identity and the RBAC in the store.

SelfSubjectAccessReview, SubjectAccessReview, LocalSubjectAccessReview (authorization.k8s.io/v1):
the spec comes back with ``status.allowed`` / ``status.reason`` as the authorizer chain words them
(pkg/registry/authorization/{selfsubjectaccessreview,subjectaccessreview,localsubjectaccessreview}/rest.go).
SelfSubjectRulesReview: the rules RBAC grants in ``spec.namespace``
(pkg/registry/authorization/selfsubjectrulesreview/rest.go). SelfSubjectReview
(authentication.k8s.io/v1): who the caller is (pkg/registry/authentication/selfsubjectreview/rest.go).
Decisions and rules come from ``auth.py`` (one rule matcher). ``kubectl auth`` sends these
bodies as protobuf (``application/vnd.kubernetes.protobuf``, as for every built-in kind), so
``decode_protobuf`` reads the few messages involved (k8s.io/api authorization/v1 and
authentication/v1 generated.proto, the runtime.Unknown envelope of apimachinery
pkg/runtime/generated.proto). This module neither stores objects nor speaks HTTP.
"""

from __future__ import annotations

import copy
from typing import Any

from .auth import Attributes, User, decide, rules_for
from .protowire import fields
from .status import bad_request, invalid, invalid_value
from .store import Store, now_rfc3339

AUTHZ = "authorization.k8s.io"
KINDS = {(AUTHZ, "selfsubjectaccessreviews"), (AUTHZ, "subjectaccessreviews"),
         (AUTHZ, "localsubjectaccessreviews"), (AUTHZ, "selfsubjectrulesreviews"),
         ("authentication.k8s.io", "selfsubjectreviews")}


def review(store: Store, gr: tuple[str, str], body: Any, user: User, namespace: str = "") -> dict:
    """The answer to creating a review object ``body`` of ``gr`` as ``user`` (201 on a real server)."""
    if not isinstance(body, dict):
        raise bad_request("the body of the request must be an object")
    kind = body.get("kind", "")
    if gr == ("authentication.k8s.io", "selfsubjectreviews"):
        info = {"username": user.name, "groups": list(user.groups)}
        return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": now_rfc3339()}, "status": {"userInfo": info}}
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    if gr[1] == "selfsubjectrulesreviews":
        if not spec.get("namespace"):
            raise bad_request("no namespace on request")
        resource, non_resource, error = rules_for(store, user, spec["namespace"])
        status = {"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": False}
        if error:
            status["evaluationError"] = error
        return {"kind": "SelfSubjectRulesReview", "apiVersion": f"{AUTHZ}/v1", "metadata": {},
                "spec": {}, "status": status}
    subject = user
    if gr[1] != "selfsubjectaccessreviews":
        subject = User(spec.get("user", ""), tuple(spec.get("groups") or ()))
    _validate(gr[1], kind or _KIND[gr[1]], body, spec, namespace)
    res, non_res = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if res is not None:
        a = Attributes(res.get("verb", ""), res.get("group", ""), res.get("resource", ""),
                       res.get("subresource", ""), res.get("namespace", ""), res.get("name", ""))
    else:
        a = Attributes(non_res.get("verb", ""), "", "", path=non_res.get("path", ""))
    allowed, reason = decide(store, subject, a)
    status: dict[str, Any] = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    out_meta = {"creationTimestamp": None}
    if gr[1] == "localsubjectaccessreviews":
        out_meta["namespace"] = namespace
    return {"kind": _KIND[gr[1]], "apiVersion": f"{AUTHZ}/v1", "metadata": out_meta,
            "spec": copy.deepcopy(spec), "status": status}


_KIND = {"selfsubjectaccessreviews": "SelfSubjectAccessReview", "subjectaccessreviews": "SubjectAccessReview",
         "localsubjectaccessreviews": "LocalSubjectAccessReview"}


def _validate(plural: str, kind: str, body: dict, spec: dict, namespace: str) -> None:
    """pkg/apis/authorization/validation/validation.go: Validate{Self,Local,}SubjectAccessReview."""
    causes = []
    res, non_res = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if res is not None and non_res is not None:
        causes.append(("spec.nonResourceAttributes", non_res, "cannot be specified in combination with resourceAttributes"))
    if res is None and non_res is None:
        causes.append(("spec.resourceAttributes", None,
                       "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    if plural != "selfsubjectaccessreviews" and not spec.get("user") and not spec.get("groups"):
        causes.append(("spec.user", spec.get("user", ""), "at least one of user or group must be specified"))
    meta = {k: v for k, v in (body.get("metadata") or {}).items()
            if k != "managedFields" and v not in (None, "", {}, [])}
    if plural == "localsubjectaccessreviews":
        meta.pop("namespace", None)
        if res is not None and res.get("namespace", "") != namespace:
            causes.append(("spec.resourceAttributes.namespace", res.get("namespace", ""), "must match metadata.namespace"))
        if non_res is not None:
            causes.append(("spec.nonResourceAttributes", non_res, "disallowed on this kind of request"))
    if meta:
        causes.append(("metadata", meta, "must be empty except for namespace" if plural == "localsubjectaccessreviews"
                       else "must be empty"))
    if causes:
        raise invalid(kind, AUTHZ, "", [invalid_value(f, v, m) for f, v, m in causes])


# -- protobuf ---------------------------------------------------------------------------------------
# field number -> (JSON name, "str" | "strs" | nested schema); fields not listed are skipped, except
# in ObjectMeta where any other field makes "metadata" non-empty (creationTimestamp 8 and
# managedFields 17 aside, which the validation ignores too)
_META = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 8: ("", "skip"),
         17: ("", "skip")}
_RES_ATTRS = {1: ("namespace", "str"), 2: ("verb", "str"), 3: ("group", "str"), 4: ("version", "str"),
              5: ("resource", "str"), 6: ("subresource", "str"), 7: ("name", "str")}
_NON_RES_ATTRS = {1: ("path", "str"), 2: ("verb", "str")}
_SAR_SPEC = {1: ("resourceAttributes", _RES_ATTRS), 2: ("nonResourceAttributes", _NON_RES_ATTRS),
             3: ("user", "str"), 4: ("groups", "strs"), 6: ("uid", "str")}
_SCHEMAS = {
    "selfsubjectaccessreviews": {1: ("metadata", _META), 2: ("spec", {1: _SAR_SPEC[1], 2: _SAR_SPEC[2]})},
    "subjectaccessreviews": {1: ("metadata", _META), 2: ("spec", _SAR_SPEC)},
    "localsubjectaccessreviews": {1: ("metadata", _META), 2: ("spec", _SAR_SPEC)},
    "selfsubjectrulesreviews": {1: ("metadata", _META), 2: ("spec", {1: ("namespace", "str")})},
    "selfsubjectreviews": {1: ("metadata", _META)},
}
_MAGIC = b"k8s\x00"


def decode_protobuf(gr: tuple[str, str], body: bytes) -> dict:
    """A review object sent as protobuf, as the JSON the rest of this module reads."""
    if not body.startswith(_MAGIC):
        raise bad_request("the body of the request could not be decoded as protobuf: no k8s magic prefix")
    try:
        envelope = dict(fields(body[len(_MAGIC):]))
        type_meta = {n: v.decode() for n, v in fields(envelope.get(1, b""))}
        obj = _message(envelope.get(2, b""), _SCHEMAS[gr[1]], meta=False)
    except (IndexError, UnicodeDecodeError, ValueError) as e:
        raise bad_request(f"the body of the request could not be decoded as protobuf: {e}") from e
    return {"apiVersion": type_meta.get(1, ""), "kind": type_meta.get(2, ""), **obj}


def _message(buf: bytes, schema: dict, meta: bool) -> dict:
    out: dict[str, Any] = {}
    for no, value in fields(buf):
        name, kind = schema.get(no, (f"field{no}" if meta else "", "other"))
        if kind == "skip" or not name:
            continue
        if kind == "str":
            out[name] = value.decode()
        elif kind == "strs":
            out.setdefault(name, []).append(value.decode())
        elif kind == "other":
            if value not in (0, b""):  # the generated marshalers write every scalar, empty or not
                out[name] = True
        else:
            out[name] = _message(value, kind, meta=kind is _META)
    return out
