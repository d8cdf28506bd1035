"""The event stream over HTTP (Server-Sent Events), job event streams, job logs, stream tokens.

    GET  /api/v1/events                 every event the caller may see, filtered by the query
    GET  /api/v1/jobs/{job_id}/events   one job's events, ending after its terminal event
    GET  /api/v1/jobs/{job_id}/logs     the job's last log lines
    POST /api/v1/events/token           a short-lived token for `?access_token=` (EventSource)

A stream resumes after `Last-Event-ID` (the header an EventSource sends when it reconnects,
or `?last_event_id=` for a new EventSource, which cannot set it).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator

import structlog
from aiohttp import web

from jobnode.api.access import accepts_stream_token, access, owner_filter, principal_of
from jobnode.api.appkeys import EVENT_SERVICE
from jobnode.api.bodies import job_id_param
from jobnode.auth.roles import MONITOR_ACCESS, USER_ACCESS, Principal
from jobnode.core.errors import JobnodeError
from jobnode.services.events import Gap, Item, parse_filter

routes = web.RouteTableDef()
log = structlog.get_logger(__name__)

# Per connection, the kernel buffers at most this much unsent: with the transport's own
# 64 KiB and the subscription's event buffer, that bounds what a stalled client can hold.
SEND_BUFFER_BYTES = 64 * 1024
# A client that overflowed its buffer gets this long to take its stream.gap before the
# connection is cut without it.
OVERFLOW_CLOSE_S = 5.0
RECONNECT_MS = 2000
HEARTBEAT = b": heartbeat\n\n"


def _last_event_id(request: web.Request) -> str | None:
    return request.headers.get("Last-Event-ID") or request.query.get("last_event_id") or None


@routes.get("/api/v1/events")
@access(MONITOR_ACCESS)
@accepts_stream_token
async def events(request: web.Request) -> web.StreamResponse:
    service = request.app[EVENT_SERVICE]
    query = {name: request.query.getall(name) for name in set(request.query)}
    event_filter = parse_filter(query, service.visibility(principal_of(request)))
    cutter = _Cutter(request)
    items = await service.follow(event_filter, last_event_id=_last_event_id(request), on_overflow=cutter.arm)
    return await _stream(request, items, cutter)


@routes.get("/api/v1/jobs/{job_id}/events")
@access(USER_ACCESS)
@accepts_stream_token
async def job_events(request: web.Request) -> web.StreamResponse:
    service = request.app[EVENT_SERVICE]
    job = await service.job(job_id_param(request), owner=owner_filter(request))
    cutter = _Cutter(request)
    items = await service.follow_job(job, last_event_id=_last_event_id(request), on_overflow=cutter.arm)
    return await _stream(request, items, cutter)


@routes.get("/api/v1/jobs/{job_id}/logs")
@access(USER_ACCESS)
async def job_logs(request: web.Request) -> web.Response:
    job_id = job_id_param(request)
    lines = await request.app[EVENT_SERVICE].logs(job_id, owner=owner_filter(request))
    return web.json_response({"id": job_id, "lines": lines, "count": len(lines)})


@routes.post("/api/v1/events/token")
@access(MONITOR_ACCESS)
async def stream_token(request: web.Request) -> web.Response:
    principal = principal_of(request) or Principal("anonymous", "admin")
    issued = request.app[EVENT_SERVICE].issue_stream_token(principal)
    body = {"token": issued.token, "expires_in": issued.expires_in_s, "role": issued.role}
    return web.json_response(body, headers={"Cache-Control": "no-store"})


class _Cutter:
    """Cuts the connection of a subscriber that overflowed and cannot even take its stream.gap."""

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        transport = self._request.transport
        if transport is not None and self._timer is None:
            # abort, not close: close would wait to flush what the stalled client does not take.
            self._timer = asyncio.get_running_loop().call_later(OVERFLOW_CLOSE_S, transport.abort)

    def disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


async def _stream(request: web.Request, items: AsyncGenerator[Item, None], cutter: _Cutter) -> web.StreamResponse:
    # Bad input (a Last-Event-ID that is no event id, an unknown job) was refused before
    # this point, with its own status; from here on the answer is a stream.
    response = web.StreamResponse(headers={
        "Content-Type": "text/event-stream; charset=utf-8",
        "Cache-Control": "no-cache, no-store",
        "X-Accel-Buffering": "no",  # nginx: pass events on at once
    })
    response.enable_chunked_encoding()
    response.force_close()  # a stream that ended is not followed by another request
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    await response.prepare(request)
    try:
        await response.write(b"retry: %d\n\n" % RECONNECT_MS)
        async for item in items:
            if not await _send(response, item):
                break
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away
    except JobnodeError as exc:  # Redis went away mid-stream: end it, the client resumes elsewhere
        log.info("events.stream_ended", error=exc.message)
    finally:
        cutter.disarm()
        await items.aclose()
    return response


async def _send(response: web.StreamResponse, item: Item) -> bool:
    """Write one item; False when the stream must end after it."""
    if item is None:
        await response.write(HEARTBEAT)
        return True
    await response.write(item.frame)
    if isinstance(item, Gap):
        return item.reason != "slow_subscriber"
    return True
