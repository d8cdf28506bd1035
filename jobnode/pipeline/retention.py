"""The retention sweep: the leader deletes the finished jobs whose retention has passed, and
the metric snapshots older than a week.

A finished job's record carries `expire_at` (jobnode.core.retention); every RETENTION_SWEEP
the leader deletes those due, in batches of BATCH through the sparse `expiry` index
(`JobStore.delete_expired`), pausing between batches so that submissions, which write to the
same collection, are never held up for long. A backlog (a node that was down for a day, a
retention just shortened) is worked off in the same bounded steps.

The node does this rather than a TTL index because SecantusDB's TTL monitor reads every record
of the collection under the store's lock once a minute, and every write waits for it; the
sweep costs one short index range per batch on MongoDB and SecantusDB alike. A record is
therefore removed up to one RETENTION_SWEEP after it expired (MongoDB's TTL monitor: about a
minute too).
"""

from __future__ import annotations

import asyncio

import structlog

from jobnode.cluster.leadership import Leadership
from jobnode.pipeline.leader_duty import every_interval_while_leader
from jobnode.core.job import utcnow
from jobnode.storage.mongo.cluster import ClusterStore
from jobnode.storage.mongo.jobs import JobStore

log = structlog.get_logger(__name__)

BATCH = 500  # records deleted per step: one delete of a few tens of milliseconds on SecantusDB
PAUSE_S = 0.05  # between steps of a backlog: writes waiting on the store go first


class RetentionSweep:
    """Deletes expired job records, in bounded steps."""

    def __init__(self, store: JobStore, cluster_store: ClusterStore | None = None, *, batch: int = BATCH) -> None:
        self.store = store
        self.cluster_store = cluster_store
        self.batch = batch
        self.deleted = 0  # records deleted by this node's sweeps since it started

    async def run_once(self) -> int:
        """Delete every record expired as of now; how many."""
        now = utcnow()
        found = 0
        while True:
            deleted = await self.store.delete_expired(now, batch=self.batch)
            found += deleted
            if deleted < self.batch:
                break
            await asyncio.sleep(PAUSE_S)
        self.deleted += found
        if self.cluster_store is not None:
            await self.cluster_store.delete_old_metrics(now)  # a minute's worth: one small range
        if found:
            log.info("retention.swept", jobs=found)
        return found

    async def run(self, leadership: Leadership, interval_s: float) -> None:
        await every_interval_while_leader(leadership, interval_s, self.run_once, name="retention")
