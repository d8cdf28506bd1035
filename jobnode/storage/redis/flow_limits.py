"""The flow limits in Redis, where the leader's dispatch script reads them on every call.

Keys (under the prefix P):
  P:limits          hash  "{scope}:{name}" -> the limit as dispatch.lua reads it (FlowLimit.encode)
  P:limit_tat       hash  "{scope}:{name}" -> when the next job may start under its rate (server ms)
  P:lrun:{scope}:{name}  set  the jobs holding a place under its concurrency (lib.lua's release_limits)
  P:limit_waiting   hash  "{scope}:{name}" -> ready jobs the last dispatch held back on it

A change rings the dispatcher's doorbell, so a raised or resumed limit takes effect at once.
"""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from jobnode.core.flow_limits import FlowLimit
from jobnode.storage.redis.boundary import redis_boundary


class FlowLimitStore:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    @redis_boundary
    async def all(self) -> list[FlowLimit]:
        raw = await self.redis.hgetall(self._key("limits"))
        return sorted((FlowLimit.decode(_text(k), orjson.loads(v)) for k, v in raw.items()),
                      key=lambda limit: (limit.scope, limit.name))

    @redis_boundary
    async def get(self, key: str) -> FlowLimit | None:
        raw = await self.redis.hget(self._key("limits"), key)
        return FlowLimit.decode(key, orjson.loads(raw)) if raw else None

    @redis_boundary
    async def put(self, limit: FlowLimit) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key("limits"), limit.key, orjson.dumps(limit.encode()))
            if limit.rate is None:
                pipe.hdel(self._key("limit_tat"), limit.key)
            pipe.rpush(self._key("wake"), 1)
            await pipe.execute()

    @redis_boundary
    async def delete(self, key: str) -> bool:
        # The running set stays: jobs that hold a place give it back there when they stop.
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._key("limits"), key)
            pipe.hdel(self._key("limit_tat"), key)
            pipe.hdel(self._key("limit_waiting"), key)
            pipe.rpush(self._key("wake"), 1)
            removed, *_ = await pipe.execute()
        return bool(removed)

    @redis_boundary
    async def usage(self, keys: list[str]) -> dict[str, tuple[int, int]]:
        """Per limit key: (jobs running under it, ready jobs the last dispatch held back on it)."""
        if not keys:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.scard(self._key("lrun", key))
            pipe.hmget(self._key("limit_waiting"), keys)
            *running, waiting = await pipe.execute()
        return {key: (int(r), int(w or 0)) for key, r, w in zip(keys, running, waiting)}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
