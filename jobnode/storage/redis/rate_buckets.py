"""Token buckets in Redis, one per API client, spent by one Lua script (lua/rate_limit.lua).

The script refills a bucket for the time passed and spends a token in one atomic step, on
the Redis server's clock: every node of the cluster shares a client's bucket, and
concurrent requests never spend the same token twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from jobnode.core.errors import Unavailable
from jobnode.storage.redis.scripts import script_source


@dataclass(frozen=True)
class BucketSpend:
    """What one attempt to spend a token found."""

    allowed: bool
    remaining: int  # whole tokens left
    full_in_s: float  # until the bucket is full again
    next_token_in_s: float  # until the next token when refused; 0 when allowed


class RateBuckets:
    """The clients' buckets under `<prefix>:rl:<client>`."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._prefix = prefix
        self._script = redis.register_script(script_source("rate_limit"))

    async def spend(self, client: str, rate_per_min: int, capacity: int) -> BucketSpend:
        """Spend one of `client`'s tokens.

        Raises Unavailable on any Redis failure, a script error included: the caller decides
        what an unanswered check means, and the driver's error types stop here.
        """
        args = [self._prefix, client, rate_per_min, capacity]
        try:
            allowed, remaining, full_ms, wait_ms = await self._script(keys=[], args=args)
        except (RedisError, OSError) as exc:
            raise Unavailable(f"redis could not spend a rate-limit token: {str(exc) or type(exc).__name__}") from exc
        return BucketSpend(bool(allowed), int(remaining), full_ms / 1000, wait_ms / 1000)
