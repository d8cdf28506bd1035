"""The reconciler: queues unfinished jobs that MongoDB holds but Redis lost or never got.

A submission writes MongoDB first and Redis second; a crash in between, or a Redis that
lost its last second of writes, leaves a job only MongoDB knows. The leader scans for
such jobs now and then and enqueues them again (enqueue is idempotent).

Why this cannot revive a finished job: Redis forgets a job only after MongoDB has recorded
its final state. So a job that is missing from Redis *and* still unfinished in MongoDB when
read again afterwards was never forgotten on purpose: it is stranded.
"""

from __future__ import annotations

from contextlib import aclosing
from datetime import timedelta

import structlog

from jobnode.core.job import utcnow
from jobnode.cluster.leadership import Leadership
from jobnode.pipeline.leader_duty import every_interval_while_leader
from jobnode.storage.redis.queue import JobQueue
from jobnode.storage.mongo.jobs import JobStore

log = structlog.get_logger(__name__)

BATCH = 500  # ids checked against Redis per pipeline


class Reconciler:
    """Finds and re-enqueues stranded jobs."""

    def __init__(self, store: JobStore, queue: JobQueue, *, grace_s: float) -> None:
        self.store = store
        self.queue = queue
        # Jobs younger than this may still be between their two writes; leave them be.
        self.grace_s = grace_s
        self.requeued = 0

    async def run_once(self) -> int:
        cutoff = utcnow() - timedelta(seconds=self.grace_s)
        found = 0
        # aclosing: a Redis failure mid-scan closes the server's cursor at once.
        async with aclosing(self.store.unfinished_ids(updated_before=cutoff, batch=BATCH)) as batches:
            async for job_ids in batches:
                missing = await self.queue.missing(job_ids)
                if missing:
                    found += await self._requeue(missing)
        self.requeued += found
        if found:
            log.warning("reconciler.requeued", jobs=found)
        return found

    async def _requeue(self, job_ids: list[str]) -> int:
        still = [job for job_id in job_ids if (job := await self.store.get(job_id)) and not job.is_terminal]
        return await self.queue.enqueue(still)

    async def run(self, leadership: Leadership, interval_s: float) -> None:
        await every_interval_while_leader(leadership, interval_s, self.run_once, name="reconciler")
