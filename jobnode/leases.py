"""The leader lease in Redis and its fencing token: who may dispatch, right now.

The election decides who *should* lead; this lease decides who *may* dispatch. Taking a
free lease increments a counter in the same atomic step, so every new holder gets a larger
token, and every dispatch script compares the token it is given with the one in Redis.
A leader that was paused, partitioned or is behind on the election keeps an old token
and its dispatch calls fail with NOT_LEADER: at most one node assigns jobs at any time.

The lease lives on the Redis server's clock (a key with a PX expiry), never on a
comparison between this machine's clock and another's: clocks on different machines
drift and jump, while a TTL measured by one server does not depend on them.
A holder renews every third of the TTL, so one or two slow renewals do not cost it the lease.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from jobnode.redis_scripts import Scripts


@dataclass(frozen=True)
class LeaseHolder:
    node_id: str
    token: int


class LeaderLease:
    """Takes, renews and gives up the fenced leader lease for one node."""

    def __init__(self, redis: Redis, scripts: Scripts, prefix: str, node_id: str, ttl_s: float) -> None:
        self._redis = redis
        self._scripts = scripts
        self._prefix = prefix
        self.node_id = node_id
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token: int | None = None

    async def acquire(self, majority: bool = True) -> int | None:
        """Take or renew the lease; returns the token held, or None if another node holds it.

        `majority`: this node has heard from a majority of its peers lately. Without one, a
        holder yields to a node that has one and asks for the lease (leader_lease.lua)."""
        args = [self._prefix, self.node_id, self.ttl_ms, "acquire", "1" if majority else "0"]
        token = int(await self._scripts.leader_lease(args=args))
        self.token = token or None
        return self.token

    async def release(self) -> None:
        """Give the lease up at once so the next leader need not wait for it to expire."""
        self.token = None
        await self._scripts.leader_lease(args=[self._prefix, self.node_id, self.ttl_ms, "release", "0"])

    async def holder(self) -> LeaseHolder | None:
        raw = await self._redis.get(f"{self._prefix}:leader")
        if not raw:
            return None
        node_id, _, token = raw.decode().rpartition(" ")
        return LeaseHolder(node_id, int(token))
