"""Job log lines in Redis: the last lines a job's processor logged with `job.log()`.

Keys (under the prefix P):
  P:log:{id}  list  the job's last LOG_LINES lines, oldest first, each a JSON object
                    {"at", "attempt", "message"}; it expires JOB_LOG_RETENTION after its
                    last line and is deleted with the job

A line is cut to LOG_LINE_MAX_BYTES, so a job's log never holds more than about
LOG_LINES x LOG_LINE_MAX_BYTES (100 KB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from jobnode.storage.redis.boundary import redis_boundary

KEY = "log"  # P:log:{id}
LOG_LINES = 100
LOG_LINE_MAX_BYTES = 1000
TRUNCATED = " [cut]"


def cut_line(message: str) -> str:
    """The message, cut so that its UTF-8 form fits LOG_LINE_MAX_BYTES (marked as cut)."""
    raw = message.encode()
    if len(raw) <= LOG_LINE_MAX_BYTES:
        return message
    keep = raw[: LOG_LINE_MAX_BYTES - len(TRUNCATED)].decode(errors="ignore")
    return keep + TRUNCATED


class JobLogs:
    """Appends and reads the per-job log lists."""

    def __init__(self, redis: Redis, prefix: str, *, retention_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._retention_ms = max(1, int(retention_s * 1000))

    def key(self, job_id: str) -> str:
        return f"{self._prefix}:{KEY}:{job_id}"

    @redis_boundary
    async def append(self, lines: Mapping[str, Sequence[dict[str, Any]]]) -> None:
        """Add lines to several jobs' logs in one round trip (each list trimmed to LOG_LINES)."""
        if not lines:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, entries in lines.items():
                key = self.key(job_id)
                pipe.rpush(key, *(orjson.dumps(entry) for entry in entries[-LOG_LINES:]))
                pipe.ltrim(key, -LOG_LINES, -1)
                pipe.pexpire(key, self._retention_ms)
            await pipe.execute()

    @redis_boundary
    async def read(self, job_id: str) -> list[dict[str, Any]]:
        return [orjson.loads(raw) for raw in await self._redis.lrange(self.key(job_id), 0, -1)]
