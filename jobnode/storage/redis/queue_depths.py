"""How deep each queue is, by state and priority band, read from the queue's Redis keys.

Ready jobs live per route (P:ready:{queue}:{type}) scored by priority band, so their counts
by band are one ZCOUNT per band and route. Delayed and leased jobs share one set each
(P:delayed, P:leases) for all queues; which queue a job belongs to is in its hash, so those
counts read each member's `queue` field, in pipelined chunks (Redis never runs one long
command for it), at most SCAN_MAX members per set. Past that the rest of a set is counted
under the queue OVERFLOW_QUEUE, so the totals stay right even when the split cannot be had
cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.asyncio import Redis

from jobnode.storage.redis.boundary import redis_boundary

# The ready score is (10 - priority) * PRIORITY_STRIDE + sequence (lib.lua's ready_add).
PRIORITY_STRIDE = 2 ** 44
# Bands by priority (0-10): the submission names low=1, normal=5 and high=10 fall one in each.
PRIORITY_BANDS = {"high": (7, 10), "normal": (4, 6), "low": (0, 3)}
SCAN_MAX = 50_000
CHUNK = 1_000
OVERFLOW_QUEUE = "(not split: too many to read)"
DEFAULT_QUEUE = "default"


@dataclass
class QueueDepth:
    """One queue's jobs by state; `by_priority` splits the ready ones."""

    queue: str
    ready: int = 0
    delayed: int = 0
    processing: int = 0
    unroutable: int = 0
    by_priority: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PRIORITY_BANDS, 0))


def band_score_range(band: str) -> tuple[int, str]:
    """ZCOUNT's min and (exclusive) max for the ready scores of a priority band."""
    low_priority, high_priority = PRIORITY_BANDS[band]
    return (10 - high_priority) * PRIORITY_STRIDE, f"({(11 - low_priority) * PRIORITY_STRIDE}"


class QueueDepths:
    """Reads the per-queue depths; `unroutable` comes from the caller's route check."""

    def __init__(self, redis: Redis, prefix: str, *, scan_max: int = SCAN_MAX) -> None:
        self.redis = redis
        self.prefix = prefix
        self.scan_max = scan_max

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @redis_boundary
    async def read(self, routes: Sequence[tuple[str, str, bool]]) -> list[QueueDepth]:
        """Depths of every queue that has jobs or a route; `routes` are (queue, type, routable)."""
        depths: dict[str, QueueDepth] = {}

        def row(queue: str) -> QueueDepth:
            return depths.setdefault(queue, QueueDepth(queue))

        async with self.redis.pipeline(transaction=False) as pipe:
            for queue, job_type, _ in routes:
                for band in PRIORITY_BANDS:
                    pipe.zcount(self.key("ready", f"{queue}:{job_type}"), *band_score_range(band))
            counts = await pipe.execute()
        bands = list(PRIORITY_BANDS)
        for index, (queue, _job_type, routable) in enumerate(routes):
            per_band = counts[index * len(bands):(index + 1) * len(bands)]
            target = row(queue)
            for band, count in zip(bands, per_band):
                target.by_priority[band] += int(count)
                target.ready += int(count)
                if not routable:
                    target.unroutable += int(count)
        for state in ("delayed", "processing"):
            set_key = self.key("delayed" if state == "delayed" else "leases")
            for queue, count in (await self._split_by_queue(set_key)).items():
                setattr(row(queue), state, getattr(row(queue), state) + count)
        return sorted(depths.values(), key=lambda depth: depth.queue)

    async def _split_by_queue(self, set_key: str) -> dict[str, int]:
        total = int(await self.redis.zcard(set_key))
        found: dict[str, int] = {}
        for start in range(0, min(total, self.scan_max), CHUNK):
            members = await self.redis.zrange(set_key, start, min(start + CHUNK, self.scan_max) - 1)
            async with self.redis.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.hget(self.key("job", _text(member)), "queue")
                queues = await pipe.execute()
            for queue in queues:
                name = _text(queue) if queue else DEFAULT_QUEUE
                found[name] = found.get(name, 0) + 1
        if total > self.scan_max:
            found[OVERFLOW_QUEUE] = total - self.scan_max
        return found


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
