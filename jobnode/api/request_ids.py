"""Request ids: every API request gets one, every log line made while serving it carries it.

The id is taken from the caller's `X-Request-Id` header when it is a sane token (so a
proxy's or a client's id ties their logs to ours) and generated otherwise; it is returned
in the response's `X-Request-Id`, error responses included. While the request is served
the id (and the `{job_id}` of the route, if any) is bound in structlog's context, and a
submitted job keeps the id of the request that submitted it, so the worker that runs it,
on any node, logs the same id (see `jobnode.pipeline.workers`).

An id that is too long or holds characters outside a conservative set is replaced, not
refused: a request id must never be the reason a request fails, and a header value that
is pasted into log lines must not be able to forge or break them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from jobnode.api.appkeys import REQUEST_ID

REQUEST_ID_HEADER = "X-Request-Id"
MAX_REQUEST_ID_CHARS = 128
ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]{0,%d}" % (MAX_REQUEST_ID_CHARS - 1))


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(header: str | None) -> str | None:
    """The caller's id if it is safe to log and echo back, else None."""
    if header and ACCEPTABLE_REQUEST_ID.fullmatch(header):
        return header
    return None


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    request_id = accepted_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
    request[REQUEST_ID] = request_id
    bound = {"request_id": request_id}
    job_id = request.match_info.get("job_id")
    if job_id is not None:
        bound["job_id"] = job_id[:64]  # the route validates it later; a log line stays short
    # aiohttp serves each request in a task of its own, with a copy of the context, so
    # these bindings end with the request (tests/test_logs_request_ids.py holds it to that).
    structlog.contextvars.bind_contextvars(**bound)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects and the like pass through as exceptions
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def request_id_of(request: web.Request) -> str | None:
    """The id the middleware gave this request (None in apps built without it)."""
    return request.get(REQUEST_ID)
