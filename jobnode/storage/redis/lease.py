"""The leader lease in Redis and its fencing token: who may dispatch, right now.

The election decides who *should* lead; this lease decides who *may* dispatch. Taking a
free lease increments a counter in the same atomic step, so every new holder gets a larger
token, and every dispatch script compares the token it is given with the one in Redis.
A leader that was paused, partitioned or is behind on the election keeps an old token
and its dispatch calls fail with NOT_LEADER: at most one node assigns jobs at any time.

A holder renews every third of the TTL, so one or two slow renewals do not cost it the lease.
A successor waits for the lease to run out, except a raft leader of a newer term than the
holder's, which takes it at once (leader_lease.lua): after a kill -9 the dead leader's TTL
would otherwise be most of the failover time.

Every lease in jobnode is timed by one clock, the Redis server's, never by comparing this
machine's clock with another's:
- the leader lease is a key with a PX expiry: Redis alone decides when it has run out;
- job leases (P:leases) and worker heartbeats (P:seen) are scored with the server's TIME
  inside the scripts that write them and compared with the same TIME by the reaper.
Why: the node that takes over a job or the lead is rarely the node that held it, and
machines' clocks drift apart, step when NTP corrects them, and freeze with a paused VM.
If a lease ran out when the taker's clock said so, a taker whose clock runs ahead would
reclaim a job the holder is still entitled to run, and the same job would run twice at
once; a holder whose clock runs behind would believe in a lease that has already passed
to another node. One clock that both sides consult removes the question of skew, and a
TTL that Redis measures is immune to pauses of the nodes (a paused holder wakes up to a
lease that expired and a dispatch that the fencing token refuses). The price is that a
lease cannot outlive Redis being unreachable; that is why losing Redis stops dispatch.

Tokens outlive Redis's memory: with a counter in MongoDB (`floors`, jobnode/storage/mongo/fence.py)
a new holder draws a floor there and its token is at least that, so a failover to a replica
that missed the last lease change, or a Redis restarted without its last writes, can never
hand out a token that was already used. Renewals do not touch MongoDB.

Not leases, and so allowed to read the local clock: job timestamps shown to people, the
reconciler's grace period (re-enqueueing a job early is harmless: enqueue is idempotent),
and the peer-message freshness window (jobnode.auth.peer_signatures), which tolerates bounded skew.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis

from jobnode.storage.redis.boundary import redis_boundary
from jobnode.storage.redis.scripts import Scripts


@dataclass(frozen=True)
class LeaseHolder:
    node_id: str
    token: int


class FenceFloors(Protocol):
    """A durable counter that new fencing tokens must not fall below (jobnode/storage/mongo/fence.py)."""

    async def draw(self) -> int: ...

    async def raise_to(self, token: int) -> None: ...


# What leader_lease.lua returns when asked to take a new lease without a floor in hand.
_FLOOR_NEEDED = -1


class LeaderLease:
    """Takes, renews and gives up the fenced leader lease for one node."""

    def __init__(self, redis: Redis, scripts: Scripts, prefix: str, node_id: str, ttl_s: float,
                 floors: FenceFloors | None = None) -> None:
        self._redis = redis
        self._floors = floors
        self._scripts = scripts
        self._prefix = prefix
        self.node_id = node_id
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.token: int | None = None

    @redis_boundary
    async def acquire(self, majority: bool = True, term: int | None = None) -> int | None:
        """Take or renew the lease; returns the token held, or None if another node holds it.

        `majority`: this node has heard from a majority of its peers lately. Without one, a
        holder yields to a node that has one and asks for the lease (leader_lease.lua).
        `term`: the election term this node leads in, only from an algorithm that elects at
        most one leader per term (raft). A newer term takes a held lease at once."""
        args = [self._prefix, self.node_id, self.ttl_ms, "acquire", "1" if majority else "0",
                "" if term is None else str(term)]
        if self._floors is None:
            token = int(await self._scripts.leader_lease(args=[*args, ""]))
        else:
            # Ask first, so a node that only renews, or waits for a held lease, costs MongoDB nothing.
            token = int(await self._scripts.leader_lease(args=[*args, "ask"]))
            if token == _FLOOR_NEEDED:
                floor = await self._floors.draw()
                token = int(await self._scripts.leader_lease(args=[*args, str(floor)]))
                if token > floor:
                    # Redis's counter was ahead (it predates the MongoDB one): record the token
                    # before using it, so no later floor can fall under it.
                    await self._floors.raise_to(token)
        self.token = token if token > 0 else None
        return self.token

    @redis_boundary
    async def release(self) -> None:
        """Give the lease up at once so the next leader need not wait for it to expire."""
        self.token = None
        await self._scripts.leader_lease(args=[self._prefix, self.node_id, self.ttl_ms, "release", "0", "", ""])

    @redis_boundary
    async def holder(self) -> LeaseHolder | None:
        raw = await self._redis.get(f"{self._prefix}:leader")
        if not raw:
            return None
        node_id, _, token = raw.decode().rpartition(" ")
        return LeaseHolder(node_id, int(token))
