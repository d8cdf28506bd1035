"""Drives this node's election state machine: clock ticks, peer messages, disk, and leadership.

The algorithms in `jobnode/election/` are pure: they take `now` and messages and hand back what to
write, send and report. This module is the I/O around them:
  - a tick loop calls `on_tick` every `tick_interval_s` of the machine's config;
  - a peer route hands in decoded messages through `deliver`;
  - raft's term and vote are written to DATA_DIR/raft-state.json and fsynced BEFORE any
    message of the same output leaves (a vote on the wire that a restart could forget
    would let this node vote twice in one term);
  - after every step, `Leadership` is told whether the machine names this node leader and
    whether `PeerContact` says a majority of its peers is reachable (which decides who keeps
    the fenced lease when two nodes both believe they lead).

One lock serialises step, persist and send, so outputs are applied in the order the
machine produced them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import structlog

from jobnode import election
from jobnode.core.background import cancel_all
from jobnode.core.settings import Settings
from jobnode.core.job import utcnow
from jobnode.cluster.leadership import Leadership
from jobnode.cluster.peers import PeerTransport
from jobnode.cluster.quorum import PeerContact

log = structlog.get_logger(__name__)

STATE_FILE = "raft-state.json"

LeaderCallback = Callable[["LeaderChange"], Awaitable[None]]


@dataclass(frozen=True)
class LeaderChange:
    """One change of this node's view of the leader."""

    leader: str | None
    previous: str | None
    term: int
    at: datetime


@dataclass
class ElectionView:
    """What this node believes about the cluster right now (read by the API)."""

    leader: str | None = None
    # The last leader this node knew, kept while it sees none: a leader's death shows first
    # as "no leader", and the next leader replaces the one lost, not that gap.
    last_leader: str | None = None
    term: int = 0
    since: datetime | None = None
    changes: int = 0
    members: dict[str, election.Member] = field(default_factory=dict)


def machine_config(settings: Settings) -> Any:
    """The election config for the chosen algorithm, from the node's settings."""
    peers = {node: url for node, url in settings.peers.items() if node != settings.node_id}
    cls = {"bully": election.BullyConfig, "raft": election.RaftConfig, "gossip": election.GossipConfig}
    extra: dict[str, Any] = {"seeds": settings.seeds}
    if settings.election_algorithm == "raft":
        # The first seed founds the cluster when it starts with no state; the others ask to join.
        extra["found"] = bool(settings.seeds) and settings.seeds[0] == settings.advertise_url.rstrip("/")
    return cls[settings.election_algorithm](
        node_id=settings.node_id,
        address=settings.advertise_url,
        priority=settings.node_priority,
        peers=peers,
        election_timeout_s=settings.election_timeout_s,
        heartbeat_interval_s=settings.election_interval_s,
        **extra,
    )


def in_cluster(machine: election.Machine | None, node_id: str) -> bool:
    """Whether this node has made it into the cluster: raft once a committed configuration holds
    it, the others once any other member is alive in its view (or it is alone by design)."""
    if machine is None:
        return False
    if isinstance(machine, election.Raft):
        return not machine.joining and node_id in machine.configuration
    return any(m.state == "alive" for other, m in machine.members.items() if other != node_id)


class RaftStateFile:
    """Raft's term and vote on disk: replaced atomically and fsynced."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / STATE_FILE

    def load(self) -> election.RaftPersistentState | None:
        if not self.path.exists():
            return None
        return election.RaftPersistentState.from_dict(json.loads(self.path.read_text()))

    def save(self, state: election.RaftPersistentState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(".tmp")
        with open(temp, "wb") as f:
            f.write(orjson.dumps(state.to_dict()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)


class Elector:
    """Feeds the election machine and applies what it returns."""

    def __init__(self, settings: Settings, transport: PeerTransport, leadership: Leadership,
                 contact: PeerContact, on_leader_change: LeaderCallback | None = None) -> None:
        self.settings = settings
        self.transport = transport
        self.leadership = leadership
        self.contact = contact
        self.on_leader_change = on_leader_change
        self.algorithm = settings.election_algorithm
        self.state_file = RaftStateFile(Path(settings.data_dir))
        self.view = ElectionView()
        self.machine: election.Machine | None = None
        self._lock = asyncio.Lock()
        self._ticks: asyncio.Task[None] | None = None
        self._recording: set[asyncio.Task[None]] = set()
        self._departed = False
        self.joined = False  # has been in the cluster since start (see `in_cluster`); never goes back
        self.received = 0

    @property
    def node_id(self) -> str:
        return self.settings.node_id

    @property
    def role(self) -> str:
        return self.machine.role if self.machine else "starting"

    async def start(self) -> None:
        config = machine_config(self.settings)
        persisted = self.state_file.load() if self.algorithm == "raft" else None
        rng = random.Random(os.urandom(16))  # the machine's only source of randomness
        self.machine = election.create(self.algorithm, config, rng, persisted)
        log.info("election.starting", algorithm=self.algorithm, peers=sorted(config.peers),
                 restored_term=persisted.term if persisted else None)
        await self._step(lambda now: self.machine.start(now))
        self._ticks = asyncio.create_task(self._tick_loop(config.tick_interval_s), name="election-ticks")

    async def stop(self) -> None:
        """Leave gracefully (raft hands leadership over), then stop ticking.

        A node that joined through SEEDS leaves the membership first (raft: a configuration
        change that must commit, bounded by LEAVE_TIMEOUT); a member of a static PEERS set only
        hands over, since it will come back under the same PEERS.
        """
        if self.machine is not None and self.settings.seeds and not self._departed:
            await self.depart(self.settings.leave_timeout_s)  # when serve() did not already
        if self.machine is not None:
            await self._step(lambda now: self.machine.leave(now))
        await cancel_all([t for t in (self._ticks, *self._recording) if t is not None])

    async def depart(self, timeout_s: float) -> bool:
        """Leave the membership and wait until the others no longer count this node (raft: the
        removal committed), at most `timeout_s`. True when the departure is confirmed."""
        if self.machine is None:
            return False
        self._departed = True
        await self._step(lambda now: self.machine.depart(now))
        confirmed = await self._wait_for(lambda: self.machine.departed, timeout_s)
        log.info("election.departed" if confirmed else "election.depart_unconfirmed", timeout_s=timeout_s)
        return confirmed

    async def remove_member(self, node_id: str, timeout_s: float) -> bool:
        """Remove another member for good; True once this node's own view no longer counts it
        (raft: a committed configuration without it)."""
        if self.machine is None:
            return False
        await self._step(lambda now: self.machine.remove_member(node_id, now))
        return await self._wait_for(lambda: not self.counts(node_id), timeout_s)

    def counts(self, node_id: str) -> bool:
        """Whether `node_id` is a member this node's election counts (raft: in the configuration,
        or its removal not yet committed)."""
        machine = self.machine
        if machine is None:
            return False
        if isinstance(machine, election.Raft):
            return node_id in machine.configuration or machine.commit_index < machine.configuration_index
        member = machine.members.get(node_id)
        return member is not None and member.state != "left"

    async def _wait_for(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        # Membership advances only on ticks and messages: poll at the tick interval.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        interval = self.machine.config.tick_interval_s if self.machine is not None else 0.05
        while not condition():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(interval)
        return True

    async def deliver(self, message: Any) -> None:
        self.received += 1
        self.contact.reached(message.src_address, asyncio.get_running_loop().time())
        await self._step(lambda now: self.machine.on_message(message, now))

    async def _tick_loop(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            await self._step(lambda now: self.machine.on_tick(now))

    async def _step(self, call: Callable[[float], election.Output]) -> None:
        async with self._lock:
            now = asyncio.get_running_loop().time()
            out = call(now)
            if out.persist is not None:
                await asyncio.to_thread(self.state_file.save, out.persist)
            for message in out.messages:
                if message.dst_address:
                    self.transport.send(message.dst_address, orjson.dumps(election.encode(message)))
            for event in out.events:
                await self._record(event)
            self.view.members = dict(self.machine.members)
            if not self.joined and in_cluster(self.machine, self.node_id):
                self.joined = True
                log.info("election.joined", members=sorted(self.view.members))
            # The majority check follows the membership as it changes (joins, removals).
            self.contact.track(m.address for node, m in self.view.members.items()
                               if node != self.node_id and m.state != "left")
            # Raft elects at most one leader per term, so its term may pre-empt an older
            # leader's lease; bully and gossip make no such promise.
            term = self.view.term if self.algorithm == "raft" else None
            self.leadership.want(self.view.leader == self.node_id, self.contact.has_majority(now), term)

    async def _record(self, event: election.Event) -> None:
        if not isinstance(event, election.LeaderChanged):
            log.info("election.member", change=type(event).__name__, node=event.node_id)
            return
        previous = self.view.leader if self.view.leader is not None else self.view.last_leader
        change = LeaderChange(event.leader, previous, event.term, utcnow())
        self.view.leader, self.view.term, self.view.since = event.leader, event.term, change.at
        if event.leader is not None:
            self.view.last_leader = event.leader
        self.view.changes += 1
        log.info("election.leader_changed", leader=event.leader, previous=change.previous, term=event.term)
        if self.on_leader_change is not None:
            # Recording (MongoDB) must not hold up the protocol: it runs on its own.
            task = asyncio.create_task(self.on_leader_change(change), name="record-leader")
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)
