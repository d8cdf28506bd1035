"""The leader's dispatch loop: assign ready jobs to workers, take back jobs from dead ones.

Every step is a fenced script (dispatch.lua, reap.lua), so this loop can run on a node
that wrongly believes it leads without harm: Redis refuses it and it stops.
It sleeps on the `wake` doorbell that enqueues ring for the jobs they queue, and completions
ring when jobs wait for the slots they free, so a new job or a freed worker is acted on at
once, and a quiet cluster (or one whose jobs start locally, local_start.py) costs a few calls
per second.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from jobnode.core.errors import NotLeader, Unavailable
from jobnode.cluster.leadership import Leadership
from jobnode.observability import tracing
from jobnode.storage.redis.queue import JobQueue

log = structlog.get_logger(__name__)

IDLE_WAIT_S = 0.1  # also how late a due delayed job can be promoted
UNAVAILABLE_PAUSE_S = 0.5


@dataclass(frozen=True)
class DispatchSettings:
    strategy: str
    job_lease_ms: int
    worker_ttl_ms: int
    low_priority_share: float
    reap_interval_s: float = 0.5
    batch: int = 256
    # Failed jobs stay in the dead-letter set as long as their records are kept (0: forever).
    dead_letter_retention_s: float = 0.0

    @property
    def share_every(self) -> int:
        return round(1 / self.low_priority_share) if self.low_priority_share > 0 else 0


class Dispatcher:
    """Runs dispatch and reaping while this node holds the leader lease."""

    def __init__(self, queue: JobQueue, leadership: Leadership, settings: DispatchSettings) -> None:
        self.queue = queue
        self.leadership = leadership
        self.settings = settings
        self.dispatched = 0
        self.reaped_jobs = 0  # jobs taken back from dead workers and expired leases
        self.reaped_workers = 0

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_reap = 0.0
        while True:
            token = await self.leadership.wait_until_leader()
            try:
                if loop.time() >= next_reap:
                    next_reap = loop.time() + self.settings.reap_interval_s
                    await self.reap(token)
                assigned, rate_wait_ms = await self.dispatch(token)
                if assigned < self.settings.batch:
                    # A job held by a rate limit goes when its turn comes, not at the next idle tick.
                    wait_s = min(IDLE_WAIT_S, rate_wait_ms / 1000) if rate_wait_ms > 0 else IDLE_WAIT_S
                    await self.queue.wait_wake(wait_s)
            except NotLeader:
                self.leadership.lost()
            except Unavailable as exc:
                log.warning("dispatch.redis_unavailable", error=str(exc))
                await asyncio.sleep(UNAVAILABLE_PAUSE_S)

    async def dispatch(self, token: int) -> tuple[int, int]:
        s = self.settings
        started_ns = tracing.clock_ns() if tracing.enabled() else 0
        result = await self.queue.dispatch(
            self.leadership.lease.node_id,
            token,
            max_jobs=s.batch,
            strategy=s.strategy,
            lease_ms=s.job_lease_ms,
            share_every=s.share_every,
        )
        self.dispatched += result.assigned
        if result.assigned and started_ns:
            # Only rounds that assigned jobs: an idle leader's empty rounds would be traces of nothing.
            tracing.record("jobnode dispatch", started_ns, {"jobnode.assigned": result.assigned,
                                                            "jobnode.strategy": s.strategy})
        return result.assigned, result.rate_wait_ms

    async def reap(self, token: int) -> None:
        result = await self.queue.reap(self.leadership.lease.node_id, token, worker_ttl_ms=self.settings.worker_ttl_ms)
        if self.settings.dead_letter_retention_s > 0:
            await self.queue.trim_dead_letters(int((time.time() - self.settings.dead_letter_retention_s) * 1000))
        self.reaped_jobs += result.requeued
        self.reaped_workers += len(result.dead_workers)
        if result.dead_workers or result.requeued:
            log.warning("dispatch.reaped", dead_workers=result.dead_workers, requeued=result.requeued)
