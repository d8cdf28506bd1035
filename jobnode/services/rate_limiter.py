"""The API's rate limit policy: how many requests a client may make, and what an outage means.

Each client has a bucket of `RATE_LIMIT_BURST` tokens (RATE_LIMIT when 0) that refills at
`RATE_LIMIT` tokens per minute; a request spends one. The buckets live in Redis
(jobnode.storage.redis.rate_buckets), so a client's budget is shared by every node.

When Redis cannot answer within `CHECK_TIMEOUT_S`, the request is let through (fail open:
an outage of the limiter must not become an outage of the API, and submissions fail on
their own with 503 if Redis is really gone) and counted in `fail_open`, which
/api/v1/stats shows and the log reports.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from jobnode.core.errors import Unavailable
from jobnode.storage.redis.rate_buckets import RateBuckets

log = structlog.get_logger(__name__)

CHECK_TIMEOUT_S = 1.0
FAIL_OPEN_LOG_EVERY_S = 60.0


@dataclass(frozen=True)
class Decision:
    """What the bucket said about one request."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # until the bucket is full again
    retry_after_s: float  # until the next token, when refused


class RateLimiter:
    """Spends tokens from clients' buckets; lets requests through when Redis fails."""

    def __init__(self, buckets: RateBuckets, rate_per_min: int, burst: int,
                 timeout_s: float = CHECK_TIMEOUT_S) -> None:
        self.buckets = buckets
        self.rate_per_min = rate_per_min
        self.capacity = burst or rate_per_min
        self._timeout_s = timeout_s
        self.allowed = 0
        self.limited = 0
        self.fail_open = 0
        self._fail_open_logged_at: float | None = None

    async def check(self, client: str) -> Decision | None:
        """Spend one of `client`'s tokens; None when Redis could not say (the request goes through)."""
        try:
            spent = await asyncio.wait_for(self.buckets.spend(client, self.rate_per_min, self.capacity),
                                           timeout=self._timeout_s)
        except (Unavailable, TimeoutError) as exc:
            self._count_fail_open(exc)
            return None
        decision = Decision(spent.allowed, self.capacity, spent.remaining, spent.full_in_s, spent.next_token_in_s)
        if decision.allowed:
            self.allowed += 1
        else:
            self.limited += 1
        return decision

    def _count_fail_open(self, exc: BaseException) -> None:
        self.fail_open += 1
        now = asyncio.get_running_loop().time()
        if self._fail_open_logged_at is None or now - self._fail_open_logged_at >= FAIL_OPEN_LOG_EVERY_S:
            self._fail_open_logged_at = now
            log.warning("ratelimit.fail_open", error=str(exc) or type(exc).__name__, fail_open_total=self.fail_open)

    def counters(self) -> dict[str, object]:
        return {"enabled": True, "rate_per_min": self.rate_per_min, "burst": self.capacity,
                "allowed": self.allowed, "limited": self.limited, "fail_open": self.fail_open}
