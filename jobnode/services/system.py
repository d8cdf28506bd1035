"""The system service: the node's health, its stats, the cluster's workers, and throughput."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from jobnode.cluster.leadership import Leadership
from jobnode.core.job import from_epoch_ms, isoformat
from jobnode.core.settings import Settings
from jobnode.observability.throughput import Throughput
from jobnode.pipeline.workers import WorkerPool
from jobnode.services.jobs import JobService
from jobnode.services.limits import LimitService
from jobnode.services.rate_limiter import RateLimiter
from jobnode.services.readiness import Readiness
from jobnode.storage.redis.queue import JobQueue

log = structlog.get_logger(__name__)

PROBE_TIMEOUT_S = 2.0
PROBE_ERROR_MAX_CHARS = 300

# A dependency check: one round trip that raises when the dependency cannot serve.
Probe = Callable[[], Awaitable[object]]
# A check answered from the node's own state: {"ok": bool, ...} with whatever explains it.
# A failing report makes the node not ready (e.g. no seed has let it join yet).
Report = Callable[[], dict[str, Any]]
# A check that informs without deciding readiness: the node still serves requests when it fails
# (a raft node without a majority accepts jobs that wait for one), so it makes the status
# "degraded", not "unavailable". Returns the check's body, with "ok".
Advisory = Callable[[], dict[str, Any]]


@dataclass(frozen=True)
class Health:
    """Whether every dependency answered, and the report that says so."""

    ok: bool
    report: dict[str, Any]


class SystemService:
    """What a node reports about itself and the queue it shares."""

    def __init__(self, settings: Settings, jobs: JobService, queue: JobQueue, leadership: Leadership,
                 pool: WorkerPool, probes: Mapping[str, Probe], rate_limiter: RateLimiter | None = None,
                 throughput: Throughput | None = None, leader_of: Callable[[], str | None] | None = None,
                 reports: Mapping[str, Report] | None = None,
                 advisories: Mapping[str, Advisory] | None = None,
                 limits: LimitService | None = None,
                 readiness: Readiness | None = None) -> None:
        self.settings = settings
        self.jobs = jobs
        self.queue = queue
        self.leadership = leadership
        self.pool = pool
        self.probes = probes  # by the name the health report gives each check
        self.reports = reports or {}  # checks this node answers from what it knows (no round trip)
        self.rate_limiter = rate_limiter
        self.throughput = throughput or Throughput()
        # Who this node's elector names as leader: /health reports it, so readiness checks
        # (`jobnode dev`, orchestrators) need no rate-limited route.
        self.leader_of = leader_of or (lambda: None)
        self.advisories = advisories or {}
        self.limits = limits
        self.readiness = readiness or Readiness.already_started()

    async def health(self) -> Health:
        """Every probe run at once, each bounded by PROBE_TIMEOUT_S; while starting, a `startup` check too."""
        names = list(self.probes)
        results = await asyncio.gather(*(_run_probe(name, self.probes[name]) for name in names))
        checks = dict(zip(names, results))
        if not self.readiness.ready:
            checks["startup"] = self.readiness.check()
        for name, report in self.reports.items():
            checks[name] = report()
        ok = all(check["ok"] for check in checks.values())
        advised = {name: {**advisory(), "required": False} for name, advisory in self.advisories.items()}
        checks.update(advised)
        degraded = not all(check["ok"] for check in advised.values())
        return Health(ok, {
            "status": "unavailable" if not ok else "degraded" if degraded else "ok",
            "node_id": self.settings.node_id,
            "is_leader": self.leadership.is_leader,
            "leader_id": self.leader_of(),
            "checks": checks,
        })

    async def stats(self) -> dict[str, Any]:
        settings, queue = self.settings, self.queue
        counts, routes = await asyncio.gather(self.jobs.counts(), queue.routes())
        depths = await queue.depths(routes)
        # The background sampler keeps the window filled; this adds the freshest point.
        self.throughput.observe(asyncio.get_running_loop().time(), depths["completed_total"])
        holder = await self.leadership.lease.holder()
        return {
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
                "outbox_oldest_age_s": depths["outbox_oldest_age_ms"] / 1000,
                # Pending jobs no registered worker can run (no live node serves their queue
                # and has their type); they run when such a node registers.
                "unroutable": [{"queue": r.queue, "type": r.type, "jobs": r.ready} for r in routes
                               if not r.routable],
                # Pending jobs held back by a flow limit, per limit (as of the leader's last dispatch).
                "limited": await self.limits.waiting() if self.limits else [],
            },
            "node": {
                "id": settings.node_id,
                "is_leader": self.leadership.is_leader,
                "strategy": settings.load_balancer_strategy,
                "worker_count": len(self.pool.workers),
                "queues": sorted({q for worker in self.pool.workers for q in worker.queues}),
                "workers_busy": self.pool.busy,
            },
            "leader": {"id": holder.node_id, "fencing_token": holder.token} if holder else None,
            "node_count": len({w["node_id"] for w in await queue.workers()}) or 1,
            "throughput": {"completed_per_s": self.throughput.per_second(), "window_s": self.throughput.span_s(),
                           "scope": "cluster"},
            "rate_limit": self.rate_limiter.counters() if self.rate_limiter else {"enabled": False},
        }

    async def workers(self) -> list[dict[str, Any]]:
        """Every worker registered in the cluster, with its state and last heartbeat."""
        rows = await self.queue.workers()
        # A worker silent for WORKER_TTL is dead; until the leader reaps it, it is still listed.
        stale_before_ms = time.time() * 1000 - self.settings.worker_ttl_s * 1000
        for row in rows:
            seen_ms = row.pop("last_heartbeat_ms")
            if seen_ms is None or seen_ms < stale_before_ms:
                row["state"] = "dead"
            else:
                # "busy" means running a job; jobs merely waiting in its inbox count in `load`.
                row["state"] = "busy" if row["current_job"] else "idle"
            row["last_heartbeat"] = isoformat(from_epoch_ms(seen_ms)) if seen_ms is not None else None
        return rows


async def _run_probe(name: str, probe: Probe) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await asyncio.wait_for(probe(), timeout=PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure of a probe is an unhealthy dependency, never a 500
        # /health is public and a driver's message names internal hosts and ports: those go to the log.
        log.warning("health.probe_failed", dependency=name,
                    error=f"{type(exc).__name__}: {exc}"[:PROBE_ERROR_MAX_CHARS])
        return {"ok": False, "error": f"{name} unavailable"}
    return {"ok": True, "latency_ms": round((loop.time() - started) * 1000, 2)}
