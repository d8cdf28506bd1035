"""The cluster service: who leads, which nodes are up, the election history and algorithms,
and election messages from peers.

Answers are plain JSON-ready dicts: the routes add nothing but the HTTP envelope. What
this node says about the leader is its own elector's view (every node answers, so a
client can ask any of them), together with the Redis lease that decides who dispatches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson

from jobnode import election
import structlog

from jobnode.auth.peer_signatures import PeerRefused, Verifier
from jobnode.cluster.elector import Elector
from jobnode.cluster.leadership import Leadership
from jobnode.cluster.peers import ELECTION_PATH
from jobnode.cluster.quorum import PeerContact
from jobnode.cluster.recorder import DOWN_AFTER_S
from jobnode.core.errors import Conflict, NotFound, Unauthorized, ValidationError
from jobnode.core.job import isoformat, utcnow
from jobnode.core.settings import Settings
from jobnode.storage.mongo.cluster import ClusterStore

log = structlog.get_logger(__name__)

# Where peers post election messages (the transport sends there); the API serves it.
PEER_MESSAGE_PATH = ELECTION_PATH
REFUSAL_LOG_EVERY_S = 60.0  # a sender that keeps failing the signature check is logged this often


class ClusterService:
    """This node's view of the cluster, and its door for peers' election traffic."""

    def __init__(self, settings: Settings, elector: Elector, leadership: Leadership, store: ClusterStore,
                 verifier: Verifier, wall_clock_s: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.elector = elector
        self.leadership = leadership
        self.store = store
        self.verifier = verifier
        # Peer signatures carry the sender's wall-clock time; freshness is judged against ours.
        self._wall_clock_s = wall_clock_s
        self._refusals_logged: dict[tuple[str, str], float] = {}
        # Set once this node has left the membership on request; the server then stops.
        self.stop_requested = asyncio.Event()

    async def leader(self) -> dict[str, Any]:
        settings, view = self.settings, self.elector.view
        holder = await self.leadership.lease.holder()
        return {
            "leader_id": view.leader,
            "is_leader": view.leader == settings.node_id,
            "address": self._address_of(view.leader),
            "term": view.term,
            "algorithm": settings.election_algorithm,
            "since": isoformat(view.since),
            "lease": {"holder": holder.node_id, "fencing_token": holder.token} if holder else None,
        }

    def _address_of(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        if node_id == self.settings.node_id:
            return self.settings.advertise_url
        member = self.elector.view.members.get(node_id)
        return member.address if member else self.settings.peers.get(node_id)

    def election(self) -> dict[str, Any]:
        settings, elector = self.settings, self.elector
        view = elector.view
        return {
            "node_id": settings.node_id,
            "is_leader": view.leader == settings.node_id,
            "leader_id": view.leader,
            "current_algorithm": settings.election_algorithm,
            "term": view.term,
            "role": elector.role,
            "since": isoformat(view.since),
            "leader_changes_seen": view.changes,
            "supported_algorithms": list(election.ALGORITHM_NAMES),
            "peer_messages": {"received": elector.received, "refused": self.verifier.refused},
            "quorum": _quorum(elector.contact),
            "members": [_member(m) for m in sorted(view.members.values(), key=lambda m: m.node_id)],
        }

    def algorithms(self) -> dict[str, Any]:
        current = self.settings.election_algorithm
        return {
            "current": current,
            "current_settings": self._election_settings(),
            "algorithms": [{**election.describe(name), "current": name == current}
                           for name in election.ALGORITHM_NAMES],
        }

    def algorithm(self, name: str) -> dict[str, Any]:
        """One algorithm's description; NotFound (listing the valid names) for any other name."""
        if name not in election.ALGORITHM_NAMES:
            raise NotFound(f"no election algorithm {name[:40]!r}; valid names: {', '.join(election.ALGORITHM_NAMES)}",
                           details={"valid_names": list(election.ALGORITHM_NAMES)})
        body = {**election.describe(name), "current": name == self.settings.election_algorithm}
        if body["current"]:
            body["current_settings"] = self._election_settings()
        return body

    def _election_settings(self) -> dict[str, Any]:
        s = self.settings
        return {"election_timeout_s": s.election_timeout_s, "election_interval_s": s.election_interval_s,
                "node_priority": s.node_priority, "peers": sorted(s.peers)}

    async def elections(self, limit: int) -> list[dict[str, Any]]:
        """The latest leader changes recorded by the cluster, newest first."""
        changes = await self.store.leader_changes(limit=limit)
        for change in changes:
            for field in ("at", "elected_at"):  # entries written before elected_at existed lack it
                if field in change:
                    change[field] = isoformat(change[field])
        return changes

    async def nodes(self) -> list[dict[str, Any]]:
        """Every node that ever registered, judged by this node's view of the leader."""
        view = self.elector.view
        now = utcnow()
        return [_node_row(doc, view.leader, view.members, now) for doc in await self.store.all_nodes()]

    async def cluster(self) -> dict[str, Any]:
        rows = await self.nodes()
        return {
            "cluster_size": sum(1 for row in rows if row["health"] == "healthy"),
            "leader": next((row for row in rows if row["is_leader"]), None),
            "election_algorithm": self.settings.election_algorithm,
            "quorum": self.quorum(),
            "nodes": rows,
            "members": self.members(),
            "membership": self.membership(),
        }

    def quorum(self) -> dict[str, Any]:
        """Whether the cluster can dispatch as far as this node sees: the `quorum` check of /health.

        Raft elects a leader only with a majority, so a node that reaches fewer members keeps
        accepting jobs (they are durable and queued) but none is dispatched until a majority
        returns. Bully and gossip lead with any live node, so for them the majority is shown
        but never fails the check."""
        body = _quorum(self.elector.contact)
        needed = self.settings.election_algorithm == "raft"
        body["needed_to_dispatch"] = needed
        # A raft follower hears only its leader, so in five nodes or more its own contacts are
        # never a majority; a leader it follows holds one (it could not lead otherwise).
        body["leader_id"] = self.elector.view.leader
        body["ok"] = body["has_majority"] or not needed or body["leader_id"] is not None
        if not body["ok"]:
            size = body["cluster_size"]
            body["reason"] = (f"raft needs {size // 2 + 1} of {size} nodes to elect a leader and this node reaches "
                              f"{1 + body['peers_reached']}: jobs are accepted but wait until a majority returns")
        return body

    def members(self) -> list[dict[str, Any]]:
        """The members as this node's election counts them (raft: its latest configuration)."""
        view, node_id = self.elector.view, self.settings.node_id
        machine = self.elector.machine
        voters = set(machine.configuration) if isinstance(machine, election.Raft) else None
        rows = []
        for member in sorted(view.members.values(), key=lambda m: m.node_id):
            if voters is not None and member.node_id not in voters:
                continue  # a raft node outside its own configuration lists itself only in `membership`
            row = {**_member(member), "is_leader": member.node_id == view.leader, "self": member.node_id == node_id}
            rows.append(row)
        return rows

    def membership(self) -> dict[str, Any]:
        """How this node's membership stands: joined or not, and raft's configuration state."""
        machine = self.elector.machine
        body: dict[str, Any] = {"node_id": self.settings.node_id, "static_peers": sorted(self.settings.peers),
                                "seeds": len(self.settings.seeds),
                                "joined": self.elector.joined}
        if isinstance(machine, election.Raft):
            body.update(configuration_index=machine.configuration_index,
                        committed=machine.commit_index >= machine.configuration_index,
                        learners=list(machine.learners))
        return body

    async def leave(self) -> dict[str, Any]:
        """Leave the membership (bounded by LEAVE_TIMEOUT), then have the node stop serving."""
        if self.stop_requested.is_set():
            raise Conflict(f"node {self.settings.node_id!r} is already leaving")
        departed = await self.elector.depart(self.settings.leave_timeout_s)
        log.info("cluster.leave_requested", node_id=self.settings.node_id, confirmed=departed)
        self.stop_requested.set()
        return {"node_id": self.settings.node_id, "left": True, "confirmed": departed,
                "leave_timeout_s": self.settings.leave_timeout_s}

    async def leave_for_shutdown(self) -> None:
        """On SIGTERM, a node that joined through SEEDS leaves the membership while it can still
        hear the others (the HTTP server is still up: raft's commit must reach it)."""
        if self.settings.seeds and not self.stop_requested.is_set():
            await self.elector.depart(self.settings.leave_timeout_s)

    async def remove_member(self, node_id: str) -> tuple[bool, dict[str, Any]]:
        """Remove a node gone for good; (confirmed, body). Raft: a configuration change that must
        commit within LEAVE_TIMEOUT to be confirmed (it goes on in the background otherwise)."""
        if node_id == self.settings.node_id:
            raise Conflict(f"node_id {node_id!r} is this node; to take it out, POST /api/v1/cluster/leave to it")
        if not self.elector.counts(node_id):
            members = sorted(m.node_id for m in self.elector.view.members.values() if m.state != "left")
            raise NotFound(f"node_id {node_id[:64]!r} is not a member of the cluster; members: {', '.join(members)}",
                           details={"members": members})
        confirmed = await self.elector.remove_member(node_id, self.settings.leave_timeout_s)
        log.info("cluster.member_removed" if confirmed else "cluster.member_removal_pending", node=node_id)
        return confirmed, {"node_id": node_id, "removed": confirmed, "members": self.members()}

    async def receive_peer_message(self, method: str, path: str, headers: Mapping[str, str], body: bytes, *,
                                   certificate_ids: frozenset[str] | None = None) -> None:
        """Hand a peer's election message to the elector once its sender checks out.

        The signature names the sender, the message must come from that sender, and with mutual
        TLS (`certificate_ids`: the node ids the client certificate names) the certificate must
        name it too. Raises Unauthorized (and counts it) for an unsigned, forged, stale, replayed
        or misattributed request, ValidationError for a signed body that is no election message.
        """
        try:
            sender = self.verifier.check(method, path, headers, body, self._wall_clock_s())
        except PeerRefused as exc:
            self._log_refusal(str(headers.get("X-Jobnode-Node", ""))[:64], exc.reason)
            raise
        if certificate_ids is not None and sender not in certificate_ids:
            self.verifier.count_refusal("certificate_mismatch")
            raise Unauthorized(f"the peer's certificate does not name node {sender!r}")
        try:
            message = election.decode(orjson.loads(body))
        except (orjson.JSONDecodeError, election.DecodeError) as exc:
            raise ValidationError("body", f"not an election message: {exc}") from None
        if message.src != sender:
            self.verifier.count_refusal("sender_mismatch")
            raise Unauthorized(f"the message claims to come from {message.src!r} but is signed by {sender!r}")
        await self.elector.deliver(message)


    def _log_refusal(self, claimed: str, reason: str) -> None:
        # A node with another CLUSTER_SECRET knocks every election timeout: log it, but not each time.
        now = asyncio.get_running_loop().time()
        key = (claimed, reason)
        if now - self._refusals_logged.get(key, float("-inf")) >= REFUSAL_LOG_EVERY_S:
            self._refusals_logged[key] = now
            log.warning("peer.refused_incoming", claimed_node=claimed, reason=reason,
                        hint="bad_signature: the sender's CLUSTER_SECRET differs from ours")


def _quorum(contact: PeerContact) -> dict[str, Any]:
    now = asyncio.get_running_loop().time()
    return {"cluster_size": contact.cluster_size, "peers_reached": contact.recent(now),
            "window_s": contact.window_s, "has_majority": contact.has_majority(now)}


def _member(member: election.Member) -> dict[str, Any]:
    return {"id": member.node_id, "address": member.address, "state": member.state}


def _node_row(doc: dict[str, Any], leader: str | None, members: Mapping[str, election.Member],
              now: datetime) -> dict[str, Any]:
    last = doc.get("last_heartbeat")
    alive = last is not None and now - last <= timedelta(seconds=DOWN_AFTER_S)
    member = members.get(doc["_id"])
    return {
        "id": doc["_id"],
        "address": doc.get("address"),
        "is_leader": doc["_id"] == leader,
        "role": doc.get("role") if alive else "unreachable",
        "health": "healthy" if alive else "down",
        "membership": member.state if member else None,
        "last_seen": isoformat(last),
        "term": doc.get("term"),
        "algorithm": doc.get("algorithm"),
        "worker_count": doc.get("worker_count"),
        "workers_busy": doc.get("workers_busy"),
        "started_at": isoformat(doc.get("started_at")),
    }
