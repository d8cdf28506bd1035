"""Limits on failed logins, kept in Redis so every node of the cluster counts the same failures.

Two counters, each living `window_s` from its first failure, both keyed by a hash of the user name (so odd names
make bounded keys and Redis holds no list of user names):

- per user name and client address: one client guessing one account is stopped after
  `per_client` failures;
- per user name over all clients: guessing spread over many addresses is stopped after
  `per_user` failures. The price is that such an attack also locks the real user out
  until the window ends; the limit is set well above what a person mistyping reaches.

A limited attempt is refused before its password is checked (429 with Retry-After), so
it costs the server nothing and tells the client nothing about the password. A
successful login clears the per-client counter.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from jobnode.core.errors import RateLimited, Unavailable


@dataclass(frozen=True)
class ThrottleLimits:
    per_client: int = 5
    per_user: int = 50
    window_s: int = 900


class LoginThrottle:
    """Counts failed logins per (user name, client) and per user name, and refuses over the limits."""

    def __init__(self, redis: Redis, prefix: str, limits: ThrottleLimits = ThrottleLimits()) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:login_failures"
        self.limits = limits

    def _keys(self, username: str, client: str) -> tuple[str, str]:
        user = hashlib.sha256(username.encode()).hexdigest()[:24]
        peer = hashlib.sha256(client.encode()).hexdigest()[:16]
        return f"{self.prefix}:{user}:{peer}", f"{self.prefix}:{user}"

    async def check(self, username: str, client: str) -> None:
        """RateLimited when this user name (from this client, or from all) failed too often lately."""
        per_client, per_user = self._keys(username, client)
        try:
            client_failures, user_failures = await self.redis.mget(per_client, per_user)
            over = [key for key, count, limit in ((per_client, client_failures, self.limits.per_client),
                                                  (per_user, user_failures, self.limits.per_user))
                    if int(count or 0) >= limit]
            if not over:
                return
            left_ms = max([await self.redis.pttl(key) for key in over] + [1000])
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            # Without the counters nothing stops guessing: refuse logins rather than allow unlimited tries.
            raise Unavailable(f"redis is unreachable, so logins are paused: {exc}") from exc
        raise RateLimited("too many failed logins for this user; try again later", retry_after_s=left_ms / 1000)

    async def failed(self, username: str, client: str) -> None:
        # A window opens at the first failure and lasts window_s (SET NX EX, then INCR keeps the
        # TTL): no calendar-aligned window whose edge would reset a guesser's count mid-attack.
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                for key in self._keys(username, client):
                    pipe.set(key, 0, ex=self.limits.window_s, nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise Unavailable(f"redis is unreachable: {exc}") from exc

    async def succeeded(self, username: str, client: str) -> None:
        per_client, _ = self._keys(username, client)
        try:
            await self.redis.delete(per_client)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError):
            pass  # the counter expires with its window anyway
