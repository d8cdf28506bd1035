"""Routes for schedules: list, read, create, change, delete, pause and resume."""

from __future__ import annotations

from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import SCHEDULE_SERVICE
from jobnode.api.bodies import read_json
from jobnode.auth.roles import ADMIN_ACCESS, MONITOR_ACCESS

routes = web.RouteTableDef()


@routes.get("/api/v1/schedules")
@access(MONITOR_ACCESS)
async def list_schedules(request: web.Request) -> web.Response:
    return web.json_response({"schedules": await request.app[SCHEDULE_SERVICE].list()})


@routes.post("/api/v1/schedules")
@access(ADMIN_ACCESS)
async def create_schedule(request: web.Request) -> web.Response:
    schedule = await request.app[SCHEDULE_SERVICE].create(await read_json(request))
    return web.json_response(schedule, status=201, headers={"Location": f"/api/v1/schedules/{schedule['name']}"})


@routes.get("/api/v1/schedules/{name}")
@access(MONITOR_ACCESS)
async def get_schedule(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SCHEDULE_SERVICE].get(request.match_info["name"]))


@routes.put("/api/v1/schedules/{name}")
@access(ADMIN_ACCESS)
async def update_schedule(request: web.Request) -> web.Response:
    body = await read_json(request)
    return web.json_response(await request.app[SCHEDULE_SERVICE].update(request.match_info["name"], body))


@routes.delete("/api/v1/schedules/{name}")
@access(ADMIN_ACCESS)
async def delete_schedule(request: web.Request) -> web.Response:
    await request.app[SCHEDULE_SERVICE].delete(request.match_info["name"])
    return web.Response(status=204)


@routes.post("/api/v1/schedules/{name}/pause")
@access(ADMIN_ACCESS)
async def pause_schedule(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SCHEDULE_SERVICE].set_paused(request.match_info["name"], True))


@routes.post("/api/v1/schedules/{name}/resume")
@access(ADMIN_ACCESS)
async def resume_schedule(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SCHEDULE_SERVICE].set_paused(request.match_info["name"], False))
