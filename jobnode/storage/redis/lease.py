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

Not leases, and so allowed to read the local clock: job timestamps shown to people, the
reconciler's grace period (re-enqueueing a job early is harmless: enqueue is idempotent),
and the peer-message freshness window (jobnode.auth.peer_signatures), which tolerates bounded skew.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from jobnode.storage.redis.boundary import redis_boundary
from jobnode.storage.redis.scripts import Scripts


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

    @redis_boundary
    async def acquire(self, majority: bool = True, term: int | None = None) -> int | None:
        """Take or renew the lease; returns the token held, or None if another node holds it.

        `majority`: this node has heard from a majority of its peers lately. Without one, a
        holder yields to a node that has one and asks for the lease (leader_lease.lua).
        `term`: the election term this node leads in, only from an algorithm that elects at
        most one leader per term (raft). A newer term takes a held lease at once."""
        args = [self._prefix, self.node_id, self.ttl_ms, "acquire", "1" if majority else "0",
                "" if term is None else str(term)]
        token = int(await self._scripts.leader_lease(args=args))
        self.token = token or None
        return self.token

    @redis_boundary
    async def release(self) -> None:
        """Give the lease up at once so the next leader need not wait for it to expire."""
        self.token = None
        await self._scripts.leader_lease(args=[self._prefix, self.node_id, self.ttl_ms, "release", "0", ""])

    @redis_boundary
    async def holder(self) -> LeaseHolder | None:
        raw = await self._redis.get(f"{self._prefix}:leader")
        if not raw:
            return None
        node_id, _, token = raw.decode().rpartition(" ")
        return LeaseHolder(node_id, int(token))
