"""Whether this node can still reach a majority of the cluster, judged by recent peer contact.

The election says who should lead; the Redis lease says who may dispatch. When two nodes
both believe they lead, this check breaks the tie: a node has a majority when, within the
last `window_s`, it has exchanged messages with a majority of the configured nodes (itself
included). "Exchanged" is either direction: a peer's message arrived here, or one of ours
was answered 2xx. A lease holder without a majority yields to a leader that has one and
asks for the lease (jobnode/storage/redis/lua/leader_lease.lua); one that nobody asks keeps leading, so
a lone survivor of a bully or gossip cluster still runs jobs.

Why: bully and gossip have no quorum of their own. A leader cut off from its peers but
not from Redis would otherwise keep renewing the lease forever, and the leader the rest
of the cluster elects could never take it: jobs would run, but under a leader nobody else
agrees on. Raft steps down by itself (CheckQuorum), and this check agrees with it.

Two-node clusters are the exception: neither node can tell a dead peer from a cut link,
and a majority of two is both, so each counts as having one and the lease alone
arbitrates (whoever holds it while reaching Redis keeps it). Nodes that joined at
runtime count while the election lists them (a member that left or was removed stops
counting); the PEERS always count.
"""

from __future__ import annotations

from collections.abc import Iterable


def normalize(address: str) -> str:
    return address.rstrip("/")


class PeerContact:
    """Last-contact times of the configured peers, and the majority check over them."""

    def __init__(self, peer_addresses: list[str], window_s: float) -> None:
        self.window_s = window_s
        self._configured = frozenset(normalize(a) for a in peer_addresses)
        self._last_s: dict[str, float] = dict.fromkeys(self._configured, float("-inf"))
        self.cluster_size = len(self._last_s) + 1

    @classmethod
    def for_cluster(cls, peer_addresses: list[str], election_timeout_s: float,
                    election_interval_s: float) -> PeerContact:
        """The window covers a follower's patience plus one gossip round over every peer
        (SWIM pings one member per period, so a given peer may go unpinged that long)."""
        window_s = election_timeout_s + len(peer_addresses) * election_interval_s
        return cls(peer_addresses, window_s)

    def track(self, member_addresses: Iterable[str]) -> None:
        """Count the configured peers and the members the election knows now, and no one else."""
        wanted = self._configured | {normalize(a) for a in member_addresses}
        if wanted != self._last_s.keys():
            self._last_s = {key: self._last_s.get(key, float("-inf")) for key in wanted}
            self.cluster_size = len(self._last_s) + 1

    def reached(self, address: str, now: float) -> None:
        """Record a message from, or a 2xx answer by, the peer at `address`."""
        key = normalize(address)
        if key in self._last_s:
            self._last_s[key] = now

    def recent(self, now: float) -> int:
        """Configured peers heard from within the window."""
        return sum(1 for t in self._last_s.values() if now - t <= self.window_s)

    def has_majority(self, now: float) -> bool:
        if self.cluster_size <= 2:
            return True
        return 1 + self.recent(now) > self.cluster_size // 2
