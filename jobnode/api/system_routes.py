"""Routes about the node and the queue: stats, workers, health, and the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import JOB_SERVICE, SYSTEM_SERVICE
from jobnode.api.openapi import openapi_document
from jobnode.auth.roles import ADMIN_ACCESS, MONITOR_ACCESS, PUBLIC

routes = web.RouteTableDef()


@routes.get("/api/v1/stats")
@access(MONITOR_ACCESS)
async def stats(request: web.Request) -> web.Response:
    return web.json_response(await request.app[SYSTEM_SERVICE].stats())


@routes.get("/api/v1/workers")
@access(ADMIN_ACCESS)
async def workers(request: web.Request) -> web.Response:
    rows = await request.app[SYSTEM_SERVICE].workers()
    return web.json_response({"workers": rows, "count": len(rows)})


@routes.get("/health")
@access(PUBLIC)
async def health(request: web.Request) -> web.Response:
    health = await request.app[SYSTEM_SERVICE].health()
    return web.json_response(health.report, status=200 if health.ok else 503)


@routes.get("/api/v1/openapi.json")
@access(PUBLIC)
async def openapi(request: web.Request) -> web.Response:
    if JOB_SERVICE in request.app:  # the cluster's types and their payload schemas, as of now
        await request.app[JOB_SERVICE].catalog.refresh()
    return web.json_response(openapi_document(request.app))
