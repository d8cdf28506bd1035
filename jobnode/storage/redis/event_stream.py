"""The event stream in Redis, as the nodes' event readers use it.

Keys (under the prefix P):
  P:events  stream  job, node and leader events, appended by the Lua scripts in the same
                    atomic step as the change they describe (lib.lua's publish), capped at
                    EVENTS_MAX_ENTRIES (MAXLEN ~) and trimmed by age here (EVENTS_RETENTION)

An entry's id is the event's id: Redis makes stream ids grow monotonically (milliseconds of
the Redis clock, then a sequence), so "everything after id X" is one XREAD or XRANGE, and a
reconnecting subscriber resumes by the last id it saw. Entries are flat name/value pairs:
`event` (the name), then for a job event `job`, `type`, `queue`, `sub` (the submitter) and
the event's own fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from jobnode.storage.redis.boundary import redis_boundary

STREAM = "events"

# One entry: its id and its fields, both as text.
Entry = tuple[str, dict[str, str]]


@dataclass(frozen=True)
class StreamBounds:
    """What a resume decision needs to know about the stream right now."""

    first_id: str | None  # the oldest entry still held (None: the stream is empty)
    last_id: str  # the newest id ever added ("0-0" for a stream never written)


class EventStream:
    """Reads and trims P:events; the scripts do all the writing."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self.key = f"{prefix}:{STREAM}"

    @redis_boundary
    async def read_after(self, last_id: str, *, count: int, block_ms: int | None) -> list[Entry]:
        """Entries after `last_id`, waiting up to `block_ms` for the first (None: answer at once)."""
        try:
            reply = await self._redis.xread({self.key: last_id}, count=count, block=block_ms)
        except redis_errors.ResponseError as exc:
            if "UNBLOCKED" in str(exc):  # the stream was deleted while we waited: nothing to read
                return []
            raise
        if not reply:
            return []
        return [_entry(raw) for raw in reply[0][1]]

    @redis_boundary
    async def range_after(self, last_id: str, *, count: int, until_id: str = "+") -> list[Entry]:
        """Up to `count` entries after `last_id` (exclusive) up to `until_id` (inclusive)."""
        start = "-" if last_id in ("", "0", "0-0") else f"({last_id}"
        return [_entry(raw) for raw in await self._redis.xrange(self.key, start, until_id, count=count)]

    @redis_boundary
    async def bounds(self) -> StreamBounds:
        try:
            info = await self._redis.xinfo_stream(self.key)
        except redis_errors.ResponseError as exc:
            if "no such key" in str(exc).lower():
                return StreamBounds(None, "0-0")
            raise
        first = info.get("first-entry")
        return StreamBounds(first_id=_text(first[0]) if first else None,
                            last_id=_text(info.get("last-generated-id") or b"0-0"))

    @redis_boundary
    async def trim_before(self, min_id: str) -> int:
        """Drop entries older than `min_id` (approximately: whole stream nodes at a time)."""
        return int(await self._redis.xtrim(self.key, minid=min_id, approximate=True))


def _entry(raw: Any) -> Entry:
    entry_id, fields = raw
    return _text(entry_id), {_text(k): _text(v) for k, v in fields.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
