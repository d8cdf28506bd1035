"""Bully election: the highest-ranked node that is up takes the lead and says so.

How it works
------------
Rank is (priority, node_id), compared with `rank_key`. A node that needs a
leader sends ELECTION to every node that may outrank it (including peers whose
priority it has not learned yet). Any higher node that is up replies ANSWER
and runs its own election (unless it follows a live leader that outranks it:
then its ANSWER carries its roster, so the caller learns whom to reach); a
node that gets no ANSWER within the answer timeout wins, raises the epoch and sends COORDINATOR to everyone. The leader
repeats COORDINATOR every heartbeat interval with its roster (who exists and
whether it answers); followers reply with an ALIVE ack carrying their own
roster, which is how nodes that joined at runtime get known cluster-wide. A
follower that hears no COORDINATOR for the election timeout starts an
election. A node that hears a lower-ranked node claim leadership starts an
election it is bound to win, so a recovered higher node takes over.

Every message carries the sender's epoch: the highest epoch it has seen, which
grows with every won election. A COORDINATOR from an older epoch is ignored
and answered with the newer epoch, which tells a stale leader (back from a
partition or a pause) that it has been replaced; it then holds a fresh
election. A new node announces itself with ALIVE to its static peers and
seeds, learns the epoch and roster from the replies, and elects shortly after.

Guarantees
----------
- Once the network is whole and quiet, every live node names the same leader: the highest-ranked
  live node.
- Epochs only grow (per process), and a node never follows a coordinator from an epoch older than
  one it has seen.
- Nodes can join at runtime through any member or seed address, and a graceful leave triggers an
  immediate election.

Failure modes
-------------
- Split brain under partition: each side elects its own highest node, so two leaders exist at once
  until the partition heals. Only the daemon's Redis fencing token keeps that safe.
- A flapping highest node causes an election on every return (one leader change per flap); nothing
  damps it.
- An asymmetric link (A hears B, B never hears A) can keep two claimants alive; it resolves when
  the link heals.
- Epochs are not persisted: a restarted node relearns the epoch from the others, and alone it
  starts again from 1.
- Failure detection is timeout based; a leader paused longer than the election timeout is replaced,
  then bullies its way back on return if it outranks the new one.

Best for
--------
2 to 10 stable nodes where a fixed preference for the leader (priority) matters and a majority is not always available.

Parameters
----------
- node_id: this node's unique id; breaks priority ties, compared in natural order.
- address: how other nodes reach this node (opaque to the algorithm, e.g. its peer URL).
- priority: higher wins the election; equal priorities fall back to node_id.
- peers: nodes known at start, node_id to address; may be empty when joining through seeds. Peers
  and seeds not known to be up get a hello every election timeout.
- election_timeout_s: how long a follower waits without a coordinator heartbeat, or for a
  coordinator after an answer, before electing.
- heartbeat_interval_s: how often the leader repeats COORDINATOR.
- answer_timeout_s: how long a candidate waits for an ANSWER from a higher node before declaring
  victory (default: the smaller of heartbeat_interval_s and election_timeout_s / 4).
- seeds: addresses to announce this node to when its node id is not known yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Machine, Member, MemberDown, MemberLeft, MemberSuspect, MemberUp, rank_key
from .config import BullyConfig
from .messages import BullyAlive, BullyAnswer, BullyCoordinator, BullyElection, BullyLeave, BullyMessage, BullyPeer

_EVENT_FOR_STATE: dict[str, type[MemberSuspect | MemberDown | MemberLeft]] = {
    "suspect": MemberSuspect, "dead": MemberDown, "left": MemberLeft}


class _Peer:
    """What this node knows about another: priority is None until heard from.

    `state` is for display and may come from the leader's roster; `left` is
    only ever set by the node's own LEAVE, because hearsay about a departure
    must never stop us from talking to a node (it may be back already).
    """

    __slots__ = ("address", "heard", "left", "priority", "state")

    def __init__(self, address: str, priority: int | None, state: str | None, heard: float) -> None:
        self.address = address
        self.priority = priority
        self.state = state
        self.heard = heard
        self.left = False


class Bully(Machine):
    """One node of the bully algorithm."""

    def __init__(self, config: BullyConfig, rng: Any) -> None:
        super().__init__(config)
        self._rng = rng  # bully needs no randomness; kept for a uniform constructor
        self._rank = rank_key(config.priority, config.node_id)
        never = float("-inf")
        self._peers = {p: _Peer(a, None, "suspect", never) for p, a in config.peers.items()}
        self._deadline = float("inf")
        self._awaiting_coordinator = False
        self._next_heartbeat = 0.0
        self._next_hello = float("inf")
        self._leader_since = never

    @property
    def members(self) -> Mapping[str, Member]:
        me = Member(self.node_id, self.config.address, "left" if self._stopped else "alive", self.config.priority)
        view = {self.node_id: me}
        for node_id, p in self._peers.items():
            view[node_id] = Member(node_id, p.address, p.state or "suspect", p.priority)
        return view

    # --- entry points --------------------------------------------------------

    def _start(self, now: float) -> None:
        self._emit(MemberUp(self.node_id, self.config.address))
        self._knock(now)
        # Listen before electing, so the first election already knows the epoch.
        self._deadline = now + self.config.answer_timeout_s

    def _tick(self, now: float) -> None:
        if now >= self._next_hello:
            self._knock(now)
        if self._role == "leader":
            if now >= self._next_heartbeat:
                self._heartbeat(now)
            self._judge_members(now)
        elif now >= self._deadline:
            if self._role == "candidate":
                self._win(now)
            else:
                self._start_election(now)

    def _leave(self, now: float) -> None:
        for node_id, p in self._peers.items():
            if not p.left:
                self._send_to(node_id, p.address, BullyLeave)

    def _remove(self, node_id: str, now: float) -> None:
        # Counted out until it speaks again (any message from it undoes this); the leader's
        # roster carries the `left` state to the others.
        p = self._peers.get(node_id)
        if p is not None and not p.left:
            p.left = True
            self._set_state(node_id, "left")
            if self._leader == node_id:
                self._start_election(now)

    def _handle(self, msg: Any, now: float) -> None:
        if not isinstance(msg, BullyMessage):
            return
        self._learn(msg.src, msg.src_address, msg.priority, now, isinstance(msg, BullyLeave))
        if isinstance(msg, BullyCoordinator):
            self._on_coordinator(msg, now)
            return
        if msg.epoch > self._term:
            self._raise_epoch(msg.epoch, now)
        if isinstance(msg, BullyElection):
            self._on_election(msg, now)
        elif isinstance(msg, BullyAnswer):
            self._on_answer(msg, now)
        elif isinstance(msg, BullyAlive):
            self._on_alive(msg, now)
        elif isinstance(msg, BullyLeave) and self._leader == msg.src:
            self._start_election(now)

    # --- elections -----------------------------------------------------------

    def _start_election(self, now: float) -> None:
        self._leader = None
        self._awaiting_coordinator = False
        rivals = [n for n, p in self._peers.items() if not p.left and self._may_outrank_me(n, unknown=True)]
        if not rivals:
            self._win(now)
            return
        self._role = "candidate"
        self._deadline = now + self.config.answer_timeout_s
        for node_id in rivals:
            self._send_to(node_id, self._peers[node_id].address, BullyElection)

    def _win(self, now: float) -> None:
        self._term += 1
        self._leader = self.node_id
        self._role = "leader"
        self._leader_since = now
        self._awaiting_coordinator = False
        self._heartbeat(now)

    def _raise_epoch(self, epoch: int, now: float) -> None:
        """Someone won a newer election than the one our leader won."""
        self._term = epoch
        if self._role == "leader":
            self._start_election(now)  # our claim is stale: re-elect under the new epoch
        elif self._leader is not None:
            self._leader = None
            self._deadline = now + self.config.election_timeout_s

    def _on_election(self, msg: BullyElection, now: float) -> None:
        if rank_key(msg.priority, msg.src) > self._rank:
            return  # only a higher node answers
        self._send_to(msg.src, msg.src_address, BullyAnswer, roster=self._roster())
        if self._role == "leader":
            self._send_to(msg.src, msg.src_address, BullyCoordinator, roster=self._roster())
        elif self._role == "candidate" or self._awaiting_coordinator:
            pass  # our own election is already under way
        elif self._leader is not None and self._may_outrank_me(self._leader, unknown=False):
            pass  # our live leader outranks us and will answer the caller itself
        else:
            self._start_election(now)

    def _on_answer(self, msg: BullyAnswer, now: float) -> None:
        self._merge_roster(msg.roster, now)
        if self._role == "candidate" and rank_key(msg.priority, msg.src) > self._rank:
            self._role = "follower"
            self._awaiting_coordinator = True
            self._deadline = now + self.config.election_timeout_s

    def _on_coordinator(self, msg: BullyCoordinator, now: float) -> None:
        if msg.epoch < self._term:
            # A stale claimant: tell it the newer epoch so it stops claiming.
            self._send_to(msg.src, msg.src_address, BullyAlive, roster=self._roster(), reply_wanted=False)
            return
        claimant = rank_key(msg.priority, msg.src)
        newer = msg.epoch > self._term
        self._term = msg.epoch
        if claimant < self._rank:
            if self._role != "candidate":
                self._start_election(now)  # bully the lower claimant
            return
        if not newer and self._leader not in (None, msg.src) and self._rank_of(self._leader) > claimant:
            return  # two claimants in one epoch: stay with the higher; it will bully the other
        self._leader = msg.src
        self._role = "follower"
        self._awaiting_coordinator = False
        self._deadline = now + self.config.election_timeout_s
        self._adopt_roster(msg.roster, now)
        self._send_to(msg.src, msg.src_address, BullyAlive, roster=self._roster(), reply_wanted=False)

    def _on_alive(self, msg: BullyAlive, now: float) -> None:
        self._merge_roster(msg.roster, now)
        if msg.reply_wanted:
            self._send_to(msg.src, msg.src_address, BullyAlive, roster=self._roster(), reply_wanted=False)
            if self._role == "leader":
                self._send_to(msg.src, msg.src_address, BullyCoordinator, roster=self._roster())

    # --- leading -------------------------------------------------------------

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.config.heartbeat_interval_s
        roster = self._roster()
        for node_id, p in self._peers.items():
            if not p.left:
                self._send_to(node_id, p.address, BullyCoordinator, roster=roster)

    def _judge_members(self, now: float) -> None:
        timeout = self.config.election_timeout_s
        if now - self._leader_since < timeout:
            return  # give every follower a full timeout to ack the new leader
        for node_id, p in self._peers.items():
            if not p.left:
                self._set_state(node_id, "alive" if now - p.heard < timeout else "dead")

    # --- membership ----------------------------------------------------------

    def _learn(self, node_id: str, address: str, priority: int, now: float, leaving: bool) -> None:
        p = self._peers.get(node_id)
        if p is None:
            p = self._peers[node_id] = _Peer(address, priority, None, now)
        p.address, p.priority, p.heard, p.left = address, priority, now, leaving
        self._set_state(node_id, "left" if leaving else "alive")

    def _adopt_roster(self, roster: tuple[BullyPeer, ...], now: float) -> None:
        """Take the leader's word for who exists and who answers, unless we heard them ourselves lately."""
        for entry in roster:
            if entry.node_id == self.node_id:
                continue
            p = self._peers.get(entry.node_id)
            if p is None:
                p = self._peers[entry.node_id] = _Peer(entry.address, entry.priority, None, float("-inf"))
            p.address, p.priority = entry.address, entry.priority
            if now - p.heard >= self.config.election_timeout_s:
                self._set_state(entry.node_id, entry.state)

    def _merge_roster(self, roster: tuple[BullyPeer, ...], now: float) -> None:
        """Add nodes we had never heard of; what we know first-hand stays."""
        for entry in roster:
            if entry.node_id != self.node_id and entry.node_id not in self._peers:
                self._peers[entry.node_id] = _Peer(entry.address, entry.priority, None, now)
                self._set_state(entry.node_id, entry.state)

    def _set_state(self, node_id: str, state: str) -> None:
        p = self._peers[node_id]
        if p.state == state:
            return
        p.state = state
        if state == "alive":
            self._emit(MemberUp(node_id, p.address))
        else:
            self._emit(_EVENT_FOR_STATE[state](node_id))

    def _roster(self) -> tuple[BullyPeer, ...]:
        me = BullyPeer(self.node_id, self.config.address, self.config.priority, "alive")
        known = (BullyPeer(n, p.address, p.priority, p.state or "suspect")
                 for n, p in self._peers.items() if p.priority is not None)
        return (me, *known)

    def _knock(self, now: float) -> None:
        """Say hello to every configured peer and seed not known to be up.

        It may be new, restarted, or back after leaving without anyone hearing
        of it; the hello is repeated every election timeout until it answers.
        """
        self._next_hello = now + self.config.election_timeout_s
        up = {p.address for p in self._peers.values() if p.state == "alive"}
        contacts = [*self.config.peers.items(), *(("", seed) for seed in self.config.seeds)]
        for node_id, address in contacts:
            if address not in up:
                self._send_to(node_id, address, BullyAlive, roster=self._roster(), reply_wanted=True)

    def _may_outrank_me(self, node_id: str, unknown: bool) -> bool:
        """Whether `node_id` outranks us; `unknown` is the answer when its priority is unknown."""
        rank = self._rank_of(node_id)
        return unknown if rank is None else rank > self._rank

    def _rank_of(self, node_id: str) -> Any:
        if node_id == self.node_id:
            return self._rank
        p = self._peers.get(node_id)
        return None if p is None or p.priority is None else rank_key(p.priority, node_id)

    def _send_to(self, node_id: str, address: str, cls: type, **fields: Any) -> None:
        self._send(cls(src=self.node_id, dst=node_id, src_address=self.config.address,
                       dst_address=address, epoch=self._term, priority=self.config.priority, **fields))
