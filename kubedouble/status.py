"""Kubernetes ``Status`` bodies and the one exception that carries them.

Every refusal the double sends (404, 409, 422, 403, ...) is an ``ApiError`` raised anywhere
below the HTTP layer and turned into a ``Status`` JSON body by the server. Builders here pin
the reasons and message formats of the real API server, so that clients' error handling sees
what it would see against K3s. This module must not know about HTTP frameworks or the store.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A refusal with an HTTP code, a Status reason and optional details."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict[str, Any]:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(code: int, reason: str, message: str, details: dict | None = None) -> dict:
    body: dict[str, Any] = {
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success" if code < 300 else "Failure",
        "message": message, "reason": reason, "code": code,
    }
    if details is not None:
        body["details"] = details
    if code < 300:
        body.pop("reason")
        body.pop("message")
    return body


def qualified(resource: str, group: str) -> str:
    """``deployments.apps`` / ``pods``: how the server names a resource in messages."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                    {"name": name, "group": group, "kind": resource})


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                    {"name": name, "group": group, "kind": resource})


def conflict(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        {"name": name, "group": group, "kind": resource})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def unsupported_media_type(accepted: tuple[str, ...] | list[str], detail: str = "") -> ApiError:
    """415 as negotiation.NewUnsupportedMediaTypeError words it (``detail`` is the double's own addition)."""
    return ApiError(415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    + ", ".join(accepted) + (f" ({detail})" if detail else ""))


class Cause(dict):
    """One entry of ``details.causes``: reason, message, field (a dotted path like spec.replicas)."""

    def __init__(self, reason: str, message: str, field: str):
        super().__init__(reason=reason, message=message, field=field)


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, message ``Kind.group "name" is invalid: <field>: <message>[, ...]``."""
    qual = f"{kind}.{group}" if group else kind
    # field.Error.Error() is "%s: %s" even for the empty path (PodLogOptions' ": Forbidden: ...")
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    joined = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", f'{qual} "{name}" is invalid: {joined}',
                    {"name": name, "group": group, "kind": kind, "causes": list(causes)})


def go_quote(value: Any) -> str:
    """How field errors print a value: strings quoted, numbers bare (Go's %v / %q mix)."""
    if type(value) is str:  # a str subclass (semantics.GoValue) is already printed the Go way
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def invalid_value(field: str, value: Any, detail: str) -> Cause:
    return Cause("FieldValueInvalid", f"Invalid value: {go_quote(value)}: {detail}", field)


def required_value(field: str, detail: str = "") -> Cause:
    return Cause("FieldValueRequired", "Required value" + (f": {detail}" if detail else ""), field)


def unsupported_value(field: str, value: Any, allowed: list) -> Cause:
    opts = ", ".join(go_quote(a) for a in allowed)
    return Cause("FieldValueNotSupported", f"Unsupported value: {go_quote(value)}: supported values: {opts}", field)


def duplicate_value(field: str, value: Any) -> Cause:
    return Cause("FieldValueDuplicate", f"Duplicate value: {go_quote(value)}", field)


def forbidden_field(field: str, detail: str) -> Cause:
    return Cause("FieldValueForbidden", f"Forbidden: {detail}", field)
