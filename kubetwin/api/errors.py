"""Kubernetes ``Status`` errors (kubernetes-dra.md §8.6).

Every failure the twin's API can produce is an :class:`ApiError`; the HTTP front end serialises it with
:meth:`ApiError.to_status` and the in-process callers (controllers, kubelet) catch it like client code
catches ``ApiException``. Messages follow the real apiserver word for word, because checks and users match
on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kubetwin.api.resources import ResourceType


@dataclass(frozen=True)
class Cause:
    """One field-level reason inside ``details.causes``."""

    reason: str
    """Machine reason, e.g. ``FieldValueRequired`` or ``FieldValueInvalid``."""
    message: str
    """Human text, e.g. ``Required value``."""
    field: str = ""
    """Dotted path of the offending field, e.g. ``spec.devices.requests[0].name``."""

    def to_dict(self) -> dict[str, str]:
        out = {"reason": self.reason, "message": self.message}
        if self.field:
            out["field"] = self.field
        return out


@dataclass
class ApiError(Exception):
    """An API failure with its HTTP code, ``reason`` and ``message``."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def to_status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def qualified(rt: ResourceType) -> str:
    """``pods`` for core kinds, ``resourceclaims.resource.k8s.io`` otherwise (as in error messages)."""
    return rt.plural if not rt.group else f"{rt.plural}.{rt.group}"


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(rt)} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(rt)} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified(rt)} "{name}": {why}',
                    _details(rt, name))


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> ApiError:
    parts = [f"{c.field}: {c.message}" if c.field else c.message for c in causes]
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    kind = rt.kind if not rt.group else f"{rt.kind}.{rt.group}"
    details: dict[str, Any] = {"name": name, "kind": rt.kind, "causes": [c.to_dict() for c in causes]}
    if rt.group:
        details["group"] = rt.group
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def forbidden(rt: ResourceType, name: str, why: str, causes: tuple[Cause, ...] = ()) -> ApiError:
    details = _details(rt, name)
    if causes:
        details["causes"] = [c.to_dict() for c in causes]
    return ApiError(403, "Forbidden", f'{qualified(rt)} "{name}" is forbidden: {why}', details)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def unsupported_media_type(content_type: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                    f"accepted media types include: application/json-patch+json, application/merge-patch+json, "
                    f"application/apply-patch+yaml (got {content_type})")
