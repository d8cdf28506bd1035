"""The queue service: each queue's depth by state and priority band, unroutable jobs, and
the last hour of cluster throughput (the console's Queues page reads it)."""

from __future__ import annotations

import asyncio
from typing import Any

from jobnode.observability.throughput_history import ThroughputHistory
from jobnode.storage.redis.queue import JobQueue
from jobnode.storage.redis.queue_depths import QueueDepth, QueueDepths


class QueueService:
    """Cluster-wide queue figures; every node answers the same from the shared Redis."""

    def __init__(self, queue: JobQueue, depths: QueueDepths, history: ThroughputHistory) -> None:
        self.queue = queue
        self.depths = depths
        self.history = history

    async def overview(self) -> dict[str, Any]:
        routes, served = await asyncio.gather(self.queue.routes(), self.queue.served())
        rows = {row.queue: row for row in await self.depths.read([(r.queue, r.type, r.routable) for r in routes])}
        for group in served:  # a queue some worker serves is listed even while it is empty
            for name in group["queues"]:
                rows.setdefault(name, QueueDepth(name))
        return {
            "queues": [_queue_json(rows[name]) for name in sorted(rows)],
            "throughput": {"window_s": self.history.window_s, "step_s": self.history.step_s,
                           "points": self.history.points()},
        }


def _queue_json(row: QueueDepth) -> dict[str, Any]:
    return {"queue": row.queue, "ready": row.ready, "delayed": row.delayed, "processing": row.processing,
            "by_priority": dict(row.by_priority), "unroutable": row.unroutable}
