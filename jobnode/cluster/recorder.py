"""This node's part in the cluster's shared record: its `nodes` entry, leader changes, snapshots."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from jobnode import __version__
from jobnode.storage.mongo.cluster import ClusterStore
from jobnode.core.settings import Settings
from jobnode.cluster.elector import Elector, LeaderChange
from jobnode.core.errors import Unavailable
from jobnode.core.job import utcnow
from jobnode.cluster.leadership import Leadership
from jobnode.storage.redis.queue import JobQueue

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 2.0
SNAPSHOT_EVERY = 30  # heartbeats: one metrics snapshot a minute per node
DOWN_AFTER_S = 3 * HEARTBEAT_INTERVAL_S
LEASE_WAITS = 10  # lease lifetimes a new leader's history entry waits for the lease


class ClusterRecorder:
    """Writes this node's heartbeat, its leader changes and metric snapshots to MongoDB."""

    def __init__(self, store: ClusterStore, settings: Settings, elector: Elector, leadership: Leadership,
                 workers_busy: Callable[[], int], queue: JobQueue, workers_total: int | None = None) -> None:
        self.store = store
        self.settings = settings
        self.elector = elector
        self.leadership = leadership
        # The worker pool sits above the cluster package: it is read through this callable.
        self.workers_busy = workers_busy
        self.queue = queue
        # With per-queue worker counts a node runs more workers than WORKER_COUNT.
        self.workers_total = settings.worker_count if workers_total is None else workers_total
        self.started_at = utcnow()
        # A new leader may wait out its predecessor's lease (bully, gossip) before it holds its own.
        self.lease_wait_s = LEASE_WAITS * settings.leader_lease_ttl_s

    def node_document(self) -> dict[str, Any]:
        view = self.elector.view
        return {
            "address": self.settings.advertise_url,
            "algorithm": self.settings.election_algorithm,
            "role": self.elector.role,
            "term": view.term,
            "leader_id": view.leader,
            "holds_lease": self.leadership.is_leader,
            "worker_count": self.workers_total,
            "workers_busy": self.workers_busy(),
            "priority": self.settings.node_priority,
            "version": __version__,
            "started_at": self.started_at,
            "last_heartbeat": utcnow(),
        }

    async def run(self) -> None:
        beats = 0
        while True:
            try:
                await self.store.heartbeat(self.settings.node_id, self.node_document())
                if beats % SNAPSHOT_EVERY == 0:
                    await self._snapshot()
            except Unavailable as exc:
                log.warning("cluster.heartbeat_failed", error=str(exc))
            beats += 1
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def on_leader_change(self, change: LeaderChange) -> None:
        """The new leader writes the history entry, so each change is recorded once.

        It writes it once it holds the leader lease, stamped then and with the fencing
        token: while views converge (gossip at start, say) two nodes may each believe for a
        moment that they lead, and stamping the belief put the one that lost in front of
        the one that leads. A node that never gets the lease never led, and records nothing.
        """
        if change.leader != self.settings.node_id:
            return
        try:
            token = await asyncio.wait_for(self.leadership.wait_until_leader(), self.lease_wait_s)
        except TimeoutError:
            log.info("cluster.election_not_recorded", term=change.term, reason="never held the leader lease")
            return
        try:
            previous = change.previous if change.previous is not None else await self._last_recorded_leader()
            doc = {
                "at": utcnow(),
                "elected_at": change.at,
                "fencing_token": token,
                "term": change.term,
                "leader": change.leader,
                "previous": previous,
                "algorithm": self.settings.election_algorithm,
                "reason": change_reason(change.leader, previous),
            }
            await self.store.record_leader_change(doc)
        except Unavailable as exc:
            log.warning("cluster.election_not_recorded", error=str(exc), term=change.term)

    async def _last_recorded_leader(self) -> str | None:
        """The leader the cluster's history names last: what a node that just started knows of its past."""
        latest = await self.store.leader_changes(limit=1)
        return latest[0]["leader"] if latest else None

    async def _snapshot(self) -> None:
        depths = await self.queue.depths()
        await self.store.snapshot({"at": utcnow(), "node_id": self.settings.node_id,
                                   "is_leader": self.leadership.is_leader, **depths})


def change_reason(leader: str | None, previous: str | None) -> str:
    if previous is None:
        return "first leader of the cluster"
    if previous == leader:
        return f"{leader} took the lead again"
    return f"{previous} lost the lead"
