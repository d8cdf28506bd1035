"""Limits on failed logins, kept in Redis so every node of the cluster counts the same failures.

Three counters, each living `window_s` from its first failure, keyed by hashes (so odd names make
bounded keys and Redis holds no list of user names or addresses):

- per user name and client address: one client guessing one account is stopped after
  `per_client` failures;
- per client address over all user names: one client spraying a password over many names is
  stopped after `per_address` failures;
- per user name over all clients: once `per_user` failures spread over many addresses, the name
  is closed, but only to addresses that have failed on it themselves. Guessing from many
  addresses then costs one address per guess, while the real user, logging in from an address
  that has not failed, still gets in: a known name cannot be locked for everyone.

A limited attempt is refused before its password is checked (429 with Retry-After), so
it costs the server nothing and tells the client nothing about the password. A
successful login clears the per-client counter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from jobnode.core.errors import RateLimited, Unavailable

log = structlog.get_logger(__name__)

REDIS_DOWN = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)


@dataclass(frozen=True)
class ThrottleLimits:
    per_client: int = 5
    per_address: int = 20
    per_user: int = 50
    window_s: int = 900


@dataclass(frozen=True)
class FailureCounts:
    """The failures the three counters hold for one attempt."""

    client: int
    address: int
    user: int


def over_limits(counts: FailureCounts, limits: ThrottleLimits) -> list[str]:
    """Which counters refuse this attempt: `client`, `address` and/or `user`."""
    over = []
    if counts.client >= limits.per_client:
        over.append("client")
    if counts.address >= limits.per_address:
        over.append("address")
    if counts.user >= limits.per_user and counts.client > 0:
        over.append("user")
    return over


class LoginThrottle:
    """Counts failed logins per (user name, client), per client and per user name; refuses over the limits."""

    def __init__(self, redis: Redis, prefix: str, limits: ThrottleLimits = ThrottleLimits()) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:login_failures"
        self.limits = limits

    def _keys(self, username: str, client: str) -> dict[str, str]:
        user = hashlib.sha256(username.encode()).hexdigest()[:24]
        peer = hashlib.sha256(client.encode()).hexdigest()[:16]
        return {"client": f"{self.prefix}:{user}:{peer}", "address": f"{self.prefix}:address:{peer}",
                "user": f"{self.prefix}:{user}"}

    async def check(self, username: str, client: str) -> None:
        """RateLimited when this attempt is over one of the limits (see the module's docstring)."""
        keys = self._keys(username, client)
        try:
            values = await self.redis.mget(list(keys.values()))
            counts = FailureCounts(*(int(value or 0) for value in values))
            over = over_limits(counts, self.limits)
            if not over:
                return
            left_ms = max([await self.redis.pttl(keys[name]) for name in over] + [1000])
        except REDIS_DOWN as exc:
            # Without the counters nothing stops guessing: refuse logins rather than allow unlimited tries.
            log.warning("auth.throttle_unavailable", error=str(exc) or type(exc).__name__)
            raise Unavailable("redis unavailable, so logins are paused") from exc
        raise RateLimited("too many failed logins; try again later", retry_after_s=left_ms / 1000)

    async def failed(self, username: str, client: str) -> None:
        # A window opens at the first failure and lasts window_s (SET NX EX, then INCR keeps the
        # TTL): no calendar-aligned window whose edge would reset a guesser's count mid-attack.
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in self._keys(username, client).values():
                    pipe.set(key, 0, ex=self.limits.window_s, nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except REDIS_DOWN as exc:
            log.warning("auth.throttle_unavailable", error=str(exc) or type(exc).__name__)
            raise Unavailable("redis unavailable") from exc

    async def succeeded(self, username: str, client: str) -> None:
        try:
            await self.redis.delete(self._keys(username, client)["client"])
        except REDIS_DOWN:
            pass  # the counter expires with its window anyway
