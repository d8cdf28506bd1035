"""Counts and times every API request by method, route template and status.

The route label is the template the request matched (`/api/v1/jobs/{job_id}`), never the
raw path, so ids in URLs cannot grow the number of series; a request that matched no
route (404, or 405 for a method the path does not take) is labelled `unmatched`. The
middleware sits outside the error middleware, so it sees the status the client really got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from jobnode.api.appkeys import METRICS
from jobnode.observability.metrics import UNMATCHED_ROUTE

# nginx's convention for "the client went away before the answer": not a server error.
CLIENT_GONE_STATUS = 499


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED_ROUTE


@web.middleware
async def http_metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = CLIENT_GONE_STATUS
        raise
    finally:
        request.app[METRICS].http_request(request.method, route_template(request), status,
                                          time.perf_counter() - started)
