"""The outbox stream in Redis, as its consumers (the outbox writers) use it.

Keys (under the prefix P):
  P:outbox           stream  a job's state after each change (lib.lua's emit), for MongoDB
  P:outbox:sessions  hash    writer (consumer) name -> id of the MongoDB session it writes with

Every node's writer is a consumer of one group, so the entries spread over the cluster.
An entry is acknowledged and deleted together once MongoDB holds it, so the stream's
length is the backlog and it needs no trimming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from jobnode.storage.redis.boundary import redis_boundary

STREAM = "outbox"
SESSIONS = "outbox:sessions"
GROUP = "writers"

# One entry: its stream id and its fields (bytes keys and values, as the node's client reads them).
Entry = tuple[Any, dict[Any, Any]]


class OutboxStream:
    """The outbox stream and its consumer group, and the writers' session registry."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.key = f"{prefix}:{STREAM}"
        self._sessions = f"{prefix}:{SESSIONS}"

    @redis_boundary
    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(self.key, GROUP, id="0", mkstream=True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @redis_boundary
    async def read(self, consumer: str, start_id: str, *, count: int, block_ms: int | None) -> list[Entry]:
        """New entries (`start_id` ">") or the consumer's own unacknowledged ones ("0").

        `block_ms` None answers at once; entries deleted since they were read come without fields
        and are left out."""
        reply = await self._redis.xreadgroup(GROUP, consumer, {self.key: start_id}, count=count, block=block_ms)
        if not reply:
            return []
        _, entries = reply[0]
        return [(entry_id, fields) for entry_id, fields in entries if fields]

    @redis_boundary
    async def ack(self, entry_ids: Sequence[Any]) -> None:
        """Acknowledge and delete entries MongoDB now holds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.key, GROUP, *entry_ids)
            pipe.xdel(self.key, *entry_ids)
            await pipe.execute()

    @redis_boundary
    async def claim(self, consumer: str, *, min_idle_ms: int, count: int) -> bool:
        """Move to `consumer` entries another consumer read and left idle that long; any moved?"""
        reply = await self._redis.xautoclaim(self.key, GROUP, consumer, min_idle_time=min_idle_ms,
                                             start_id="0", count=count)
        return bool(reply[1] if len(reply) > 1 else [])

    @redis_boundary
    async def record_session(self, consumer: str, session_id: bytes) -> bytes | None:
        """Register the consumer's MongoDB session; returns the one registered before, if any."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self._sessions, consumer)
            pipe.hset(self._sessions, consumer, session_id)
            previous, _ = await pipe.execute()
        return previous

    @redis_boundary
    async def silent_sessions(self, consumer: str, *, min_idle_ms: int) -> list[bytes]:
        """Session ids of the other consumers that hold entries and have been idle that long."""
        consumers = await self._redis.xinfo_consumers(self.key, GROUP)
        names = [_text(c["name"]) for c in consumers
                 if c["pending"] and c["idle"] >= min_idle_ms and _text(c["name"]) != consumer]
        if not names:
            return []
        return [raw for raw in await self._redis.hmget(self._sessions, names) if raw]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
