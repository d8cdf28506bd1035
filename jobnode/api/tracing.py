"""The span of each API request, continuing the caller's trace when it sends a `traceparent`.

Named by method and route template, like the HTTP metrics, so ids in paths never name a span.
It sits outside the error middleware and so sees the status the client got. With tracing off
it only passes the request on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from jobnode.api.http_metrics import route_template
from jobnode.observability import tracing


@web.middleware
async def tracing_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if not tracing.enabled():
        return await handler(request)
    with tracing.server_span(request.method, route_template(request), request.headers) as span:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            span.set_attribute("http.response.status_code", exc.status)
            raise
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            tracing.failed(span, f"HTTP {response.status}")
        return response
