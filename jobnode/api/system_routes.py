"""Routes about the node and the queue: stats, workers, health, and the OpenAPI document."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from jobnode.api.access import access
from jobnode.api.appkeys import (
    LEADERSHIP, MONGO, POOL, QUEUE, RATE_LIMITER, REDIS, SERVICE, SETTINGS, THROUGHPUT,
)
from jobnode.auth.roles import ADMIN_ACCESS, MONITOR_ACCESS, PUBLIC
from jobnode.api.openapi import openapi_document
from jobnode.core.job import from_epoch_ms, isoformat

routes = web.RouteTableDef()

HEALTH_TIMEOUT_S = 2.0


@routes.get("/api/v1/stats")
@access(MONITOR_ACCESS)
async def stats(request: web.Request) -> web.Response:
    app = request.app
    settings, queue, leadership = app[SETTINGS], app[QUEUE], app[LEADERSHIP]
    counts, depths = await asyncio.gather(app[SERVICE].counts(), queue.depths())
    throughput = app[THROUGHPUT]
    throughput.observe(asyncio.get_running_loop().time(), depths["completed_total"])
    holder = await leadership.lease.holder()
    body: dict[str, Any] = {
        "jobs": {**counts, "total": sum(counts.values())},
        "queue": {
            # Compatibility names first (the Go system's scripts read them), then ours.
            "pending": depths["ready"],
            "processing": depths["processing"],
            "completed": depths["completed_total"],
            "failed": depths["dead_letter"],
            "delayed": depths["delayed"],
            "dead_letter": depths["dead_letter"],
            "retried_total": depths["retried_total"],
            "failed_total": depths["failed_total"],
            "outbox": depths["outbox"],
        },
        "node": {
            "id": settings.node_id,
            "is_leader": leadership.is_leader,
            "strategy": settings.load_balancer_strategy,
            "worker_count": settings.worker_count,
            "workers_busy": app[POOL].busy,
        },
        "leader": {"id": holder.node_id, "fencing_token": holder.token} if holder else None,
        "node_count": len({w["node_id"] for w in await queue.workers()}) or 1,
        "throughput": {"completed_per_s": throughput.per_second(), "window_s": throughput.window_s},
        "rate_limit": limiter.counters() if (limiter := app.get(RATE_LIMITER)) else {"enabled": False},
    }
    return web.json_response(body)


@routes.get("/api/v1/workers")
@access(ADMIN_ACCESS)
async def workers(request: web.Request) -> web.Response:
    rows = await request.app[QUEUE].workers()
    for row in rows:
        # "busy" means running a job; jobs merely waiting in its inbox count in `load`.
        row["state"] = "busy" if row["current_job"] else "idle"
        row["last_heartbeat"] = isoformat(from_epoch_ms(row.pop("last_heartbeat_ms")))
    return web.json_response({"workers": rows, "count": len(rows)})


@routes.get("/health")
@access(PUBLIC)
async def health(request: web.Request) -> web.Response:
    app = request.app
    redis_check, mongo_check = await asyncio.gather(
        _check(app[REDIS].ping()), _check(app[MONGO].admin.command("ping"))
    )
    ok = redis_check["ok"] and mongo_check["ok"]
    body = {
        "status": "ok" if ok else "unavailable",
        "node_id": app[SETTINGS].node_id,
        "is_leader": app[LEADERSHIP].is_leader,
        "checks": {"redis": redis_check, "mongodb": mongo_check},
    }
    return web.json_response(body, status=200 if ok else 503)


async def _check(probe: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(probe, timeout=HEALTH_TIMEOUT_S)
    except Exception as exc:  # any failure of a probe is an unhealthy dependency, never a 500
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "latency_ms": round((loop.time() - started) * 1000, 2)}


@routes.get("/api/v1/openapi.json")
@access(PUBLIC)
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request.app))
