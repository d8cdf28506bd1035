"""Keeps the fenced leader lease while this node is meant to lead, and only then.

The election (or, on a lone node, the node itself) sets `should_lead`; this loop turns
that wish into a lease in Redis and renews it. Dispatch-side loops read `token`: None
means "not leader, do nothing". Losing the lease (Redis unreachable, another node holds
it) is noticed at the next renewal, and fencing makes any step in between harmless.
"""

from __future__ import annotations

import asyncio

import structlog

from jobnode.core.errors import Unavailable
from jobnode.storage.redis.lease import LeaderLease

log = structlog.get_logger(__name__)

# While meant to lead but locked out (the old leader's lease has not run out yet), try
# often: the gap between its lease expiring and ours being taken is failover time.
ACQUIRE_RETRY_S = 0.05


class Leadership:
    """Turns "this node should lead" into a held, renewed leader lease."""

    def __init__(self, lease: LeaderLease) -> None:
        self.lease = lease
        self.should_lead = False
        self.has_majority = True
        self.term: int | None = None
        self._gained = asyncio.Event()
        self._changed = asyncio.Event()
        self.renew_interval_s = lease.ttl_ms / 1000 / 3

    @property
    def token(self) -> int | None:
        return self.lease.token

    @property
    def is_leader(self) -> bool:
        return self.lease.token is not None

    def want(self, lead: bool, majority: bool = True, term: int | None = None) -> None:
        """Called by the election: start or stop trying to hold the lease.

        `majority` (recent contact with most peers) decides who wins when two nodes both
        believe they lead: the one without it yields once the other asks (leader_lease.lua).
        `term`, from raft only, lets a newly elected leader take over at once (leases.py)."""
        self.has_majority = majority
        self.term = term
        if lead != self.should_lead:
            self.should_lead = lead
            self._changed.set()

    async def wait_until_leader(self) -> int:
        while self.lease.token is None:
            self._gained.clear()
            await self._gained.wait()
        return self.lease.token

    def lost(self) -> None:
        """A fenced script said we no longer hold the lease."""
        if self.lease.token is not None:
            log.warning("leadership.lost", node_id=self.lease.node_id)
        self.lease.token = None

    async def run(self) -> None:
        while True:
            await self._step()
            self._changed.clear()
            waiting = self.should_lead and self.lease.token is None
            try:
                await asyncio.wait_for(self._changed.wait(),
                                       timeout=ACQUIRE_RETRY_S if waiting else self.renew_interval_s)
            except TimeoutError:
                pass

    async def _step(self) -> None:
        before = self.lease.token
        try:
            if self.should_lead:
                await self.lease.acquire(self.has_majority, self.term)
            elif before is not None:
                await self.lease.release()
        except Unavailable as exc:
            log.warning("leadership.redis_unavailable", error=str(exc))
            self.lease.token = None
        if self.lease.token != before:
            log.info("leadership.changed", node_id=self.lease.node_id, token=self.lease.token)
        if self.lease.token is not None:
            self._gained.set()

    async def resign(self) -> None:
        self.should_lead = False
        try:
            await self.lease.release()
        except Unavailable:
            self.lease.token = None
