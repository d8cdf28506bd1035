"""Typed errors raised at jobnode's boundaries; the API maps them to HTTP in one place."""

from __future__ import annotations

from typing import Any


class JobnodeError(Exception):
    """Base of every error jobnode raises on purpose."""

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(JobnodeError):
    """Input that is malformed or breaks a rule; `field` names the offending part."""

    def __init__(self, field: str | None, message: str, *, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.field = field


class UnknownQueue(ValidationError):
    """A submission names a queue no node declares serving; `details["queues"]` lists those that are."""


class InvalidPayload(ValidationError):
    """A payload that breaks its type's schema; `details["errors"]` names every failing field."""


class NotFound(JobnodeError):
    """The named thing does not exist (or the caller may not see it)."""


class Conflict(JobnodeError):
    """The request is valid but the thing is in a state that forbids it."""


class Unavailable(JobnodeError):
    """A dependency (Redis, MongoDB) cannot be reached; the caller may retry later."""


class Overloaded(Unavailable):
    """This node has as much work waiting as it accepts; the caller should come back after `retry_after_s`."""

    def __init__(self, message: str, *, retry_after_s: float, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class PayloadTooLarge(JobnodeError):
    """The request body is over the configured limit."""


class UnsupportedMediaType(JobnodeError):
    """The request body is not JSON."""


class Unauthorized(JobnodeError):
    """No credentials, or credentials that do not check out."""


class Forbidden(JobnodeError):
    """Valid credentials whose role is too low for the route."""


class RateLimited(JobnodeError):
    """The client sent more requests than its budget allows."""

    def __init__(self, message: str, *, retry_after_s: float, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class NotLeader(JobnodeError):
    """This node lost (or never held) the fencing lease, so it may not dispatch."""
