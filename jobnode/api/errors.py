"""The one place where jobnode's typed errors become HTTP responses."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import hdrs, web

from jobnode.core import errors
from jobnode.api.appkeys import SETTINGS

log = structlog.get_logger(__name__)

STATUS: dict[type[errors.JobnodeError], tuple[int, str]] = {
    errors.ValidationError: (400, "invalid_request"),
    errors.UnknownQueue: (400, "unknown_queue"),
    errors.InvalidPayload: (400, "invalid_payload"),
    errors.Unauthorized: (401, "unauthorized"),
    errors.Forbidden: (403, "forbidden"),
    errors.NotFound: (404, "not_found"),
    errors.Conflict: (409, "conflict"),
    errors.PayloadTooLarge: (413, "payload_too_large"),
    errors.UnsupportedMediaType: (415, "unsupported_media_type"),
    errors.RateLimited: (429, "rate_limited"),
    errors.Overloaded: (503, "overloaded"),
    errors.Unavailable: (503, "unavailable"),
    errors.NotLeader: (503, "not_leader"),
}

HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_response(status: int, code: str, message: str, details: object = None) -> web.Response:
    body = {"error": {"code": code, "message": message, "details": details}}
    return web.json_response(body, status=status)


def from_exception(exc: errors.JobnodeError) -> web.Response:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            status, code = STATUS[cls]
            break
    else:
        status, code = 500, "internal"
    details = exc.details
    if isinstance(exc, errors.ValidationError):
        details = {"field": exc.field, **(details or {})}
    response = error_response(status, code, exc.message, details)
    if isinstance(exc, (errors.RateLimited, errors.Overloaded)):
        # At least a second: never invite a retry that is still too early.
        response.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    if isinstance(exc, errors.Unauthorized):
        response.headers["WWW-Authenticate"] = 'Bearer realm="jobnode"'  # RFC 6750: say how to authenticate
    return response


def from_http_exception(request: web.Request, exc: web.HTTPException) -> web.Response:
    """aiohttp's own 4xx (no route, wrong method, body too large) in jobnode's error shape."""
    code = HTTP_CODES.get(exc.status, "http_error")
    message, details = exc.reason, None
    if exc.status == 404:
        message = f"no route for {request.method} {request.path}"
    elif isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        message = f"{request.method} is not allowed on {request.path}; allowed: {', '.join(allowed)}"
        details = {"allowed_methods": allowed}
    elif exc.status == 413:
        limit = request.app[SETTINGS].max_body_bytes
        message = f"request body is larger than the limit of {limit} bytes"
        details = {"limit_bytes": limit}
    response = error_response(exc.status, code, message, details)
    if hdrs.ALLOW in exc.headers:  # a 405 must say what is allowed
        response.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
    return response


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except errors.JobnodeError as exc:
        return from_exception(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(request, exc)
    except Exception:
        # Never a stack trace in a response: the log has it, under an id the caller can quote.
        incident = uuid.uuid4().hex[:12]
        log.exception("api.unhandled_error", incident=incident, path=request.path, method=request.method)
        return error_response(500, "internal", f"internal error (incident {incident}); see the node log")
