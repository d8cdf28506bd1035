"""GET /api/v1/queues: depth by queue, state and priority band; unroutable jobs; an hour of throughput."""

from __future__ import annotations

from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import QUEUE_SERVICE
from jobnode.auth.roles import MONITOR_ACCESS

routes = web.RouteTableDef()


@routes.get("/api/v1/queues")
@access(MONITOR_ACCESS)
async def queues(request: web.Request) -> web.Response:
    return web.json_response(await request.app[QUEUE_SERVICE].overview())
