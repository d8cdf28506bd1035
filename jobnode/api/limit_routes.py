"""Routes for flow limits: list, read, set, remove, pause and resume (per queue, type or user)."""

from __future__ import annotations

from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import LIMIT_SERVICE
from jobnode.api.bodies import read_json
from jobnode.auth.roles import ADMIN_ACCESS, MONITOR_ACCESS

routes = web.RouteTableDef()


def _target(request: web.Request) -> tuple[str, str]:
    return request.match_info["scope"], request.match_info["name"]


@routes.get("/api/v1/limits")
@access(MONITOR_ACCESS)
async def list_limits(request: web.Request) -> web.Response:
    return web.json_response({"limits": await request.app[LIMIT_SERVICE].list()})


@routes.get("/api/v1/limits/{scope}/{name}")
@access(MONITOR_ACCESS)
async def get_limit(request: web.Request) -> web.Response:
    return web.json_response(await request.app[LIMIT_SERVICE].get(*_target(request)))


@routes.put("/api/v1/limits/{scope}/{name}")
@access(ADMIN_ACCESS)
async def put_limit(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await request.app[LIMIT_SERVICE].put(*_target(request), body))


@routes.delete("/api/v1/limits/{scope}/{name}")
@access(ADMIN_ACCESS)
async def delete_limit(request: web.Request) -> web.Response:
    await request.app[LIMIT_SERVICE].delete(*_target(request))
    return web.Response(status=204)


@routes.post("/api/v1/limits/{scope}/{name}/pause")
@access(ADMIN_ACCESS)
async def pause_limit(request: web.Request) -> web.Response:
    return web.json_response(await request.app[LIMIT_SERVICE].set_paused(*_target(request), True))


@routes.post("/api/v1/limits/{scope}/{name}/resume")
@access(ADMIN_ACCESS)
async def resume_limit(request: web.Request) -> web.Response:
    return web.json_response(await request.app[LIMIT_SERVICE].set_paused(*_target(request), False))
