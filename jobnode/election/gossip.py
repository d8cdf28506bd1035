"""Gossip (SWIM) membership, with the leader read off the converged view.

How it works
------------
Every protocol period (`heartbeat_interval_s`) a node pings one member, taking
members in a shuffled round-robin order so each is probed within two rounds.
Members held dead stay in the rotation, without consequence if silent: the
ping carries their death notice, so one that is in fact alive refutes it, and
two sides of a healed partition that buried each other find out within a round.
No ack within `ping_timeout_s`: it asks `ping_req_fanout` other members to ping
the target for it (a ping-req), which tells a dead node from a bad link. No
ack by the end of the period: the target becomes *suspect*. A suspect not
cleared within the suspicion timeout (`election_timeout_s`) is declared
*dead*. A node that hears it is suspected (or dead) refutes it by raising its
own incarnation number; a newer incarnation beats any older rumour, and at
equal incarnations the graver state wins (alive < suspect < dead < left).

Changes travel piggybacked on pings and acks, each repeated about
retransmit_mult * log2(n) times. Every message also carries the sender's own
entry and, to a member it holds suspect or dead, that member's entry, so the
member can refute at once. A periodic full-state exchange (push-pull sync)
with a random member, dead ones included, repairs whatever dissemination
missed; joining is the same exchange with a seed (or static peer), offered
again once per round while that contact has no live entry in the view. A
graceful leave sends a final `left` entry.

The leader is the highest-ranked member (by `rank_key`) that the local view
holds alive or suspect. It stamps its entry with a leader epoch above any
epoch it has seen; every node reports the highest epoch it has seen as its
term, so once views agree, leader and term agree too.

Guarantees
----------
- After the network heals and stays quiet, all live views agree on the membership and therefore on
  the leader and its epoch.
- A live node that was wrongly suspected or declared dead gets back in by refuting with a higher
  incarnation; no live node stays dead in a view once it can talk to the others.
- A member that crashed is suspected within a few protocol periods and declared dead one suspicion
  timeout later; a member that leaves is removed at once.
- Load per node is constant per period (one ping, at most k ping-reqs), whatever the cluster size.

Failure modes
-------------
- No agreement protocol: while views differ (during a partition or right after a crash) two nodes
  can each believe they lead. The daemon's Redis fencing token is what keeps that safe.
- Leader changes wait for failure detection: a crashed leader is replaced only after it is
  suspected and the suspicion timeout expires.
- Detection is probabilistic: heavy loss can make a live node suspect (it then refutes), and a long
  pause of this node can make it suspect others (stalls are detected and forgiven locally).
- Epochs are not persisted: a restarted node relearns them from the others.

Best for
--------
Larger or changing clusters (10+ nodes) where nodes join and leave at runtime and a majority is not always reachable.

Parameters
----------
- node_id: this node's unique id; breaks priority ties, compared in natural order.
- address: how other nodes reach this node (opaque to the algorithm, e.g. its peer URL).
- priority: the highest-priority live member leads; equal priorities fall back to node_id.
- peers: nodes to contact at start (and once per round until they answer), node_id to address; may
  be empty when joining through seeds.
- election_timeout_s: the suspicion timeout: how long a suspect has to refute before it is declared
  dead.
- heartbeat_interval_s: the protocol period: this node pings one member per period.
- ping_timeout_s: how long to wait for a direct ack before asking others to ping (default: half the
  period).
- ping_req_fanout: how many members are asked to ping an unresponsive target (k).
- sync_interval_s: how often to exchange full state with a random member (default: 10 periods).
- retransmit_mult: each change is piggybacked about retransmit_mult * log2(n) times.
- max_piggyback: at most this many queued changes ride on one message.
- seeds: addresses to join through; contacted once per probe round while no live member has that
  address.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .base import Machine, Member, MemberDown, MemberLeft, MemberSuspect, MemberUp, rank_key
from .config import GossipConfig
from .messages import GossipAck, GossipEntry, GossipLeave, GossipMessage, GossipPing, GossipPingReq, GossipSync

_GRAVITY = {"alive": 0, "suspect": 1, "dead": 2, "left": 3}
_PROBED = ("alive", "suspect")
_PINGED = ("alive", "suspect", "dead")


def supersedes(new: GossipEntry, old: GossipEntry) -> bool:
    """SWIM precedence: a newer incarnation wins, then the graver state."""
    if new.incarnation != old.incarnation:
        return new.incarnation > old.incarnation
    return _GRAVITY[new.state] > _GRAVITY[old.state]


@dataclass
class _Probe:
    target: str
    seq: int
    sent_at: float
    indirect: bool = False


class Gossip(Machine):
    """One SWIM member."""

    def __init__(self, config: GossipConfig, rng: Any) -> None:
        super().__init__(config)
        self._rng = rng
        self._incarnation = 0
        self._lead_epoch = 0
        self._view: dict[str, GossipEntry] = {}
        self._suspected_at: dict[str, float] = {}
        self._queued: dict[str, int] = {}  # node_id -> times its entry has been piggybacked
        self._contacts = [*config.peers.items(), *(("", seed) for seed in config.seeds)]
        self._probe: _Probe | None = None
        self._order: list[str] = []
        self._seq = 0
        self._relays: dict[int, tuple[str, str, int, float]] = {}
        self._next_probe = self._next_sync = self._join_deadline = float("inf")
        self._last_tick = self._last_claim = float("-inf")
        self._joined = False
        self._view_changed = True
        self._role = "joining"

    @property
    def incarnation(self) -> int:
        return self._incarnation

    @property
    def members(self) -> Mapping[str, Member]:
        me = self._own_entry("left" if self._stopped else "alive")
        return {e.node_id: Member(e.node_id, e.address, e.state, e.priority, e.incarnation)
                for e in (me, *self._view.values())}

    # --- entry points --------------------------------------------------------

    def _start(self, now: float) -> None:
        period = self.config.heartbeat_interval_s
        self._emit(MemberUp(self.node_id, self.config.address))
        for node_id, address in self._contacts:
            self._send_to(node_id, address, GossipSync, updates=self._full_state(), reply_wanted=True)
        # Random phases keep the nodes from probing in lockstep.
        self._next_probe = now + self._rng.random() * period
        self._next_sync = now + self.config.sync_interval_s * (0.5 + self._rng.random())
        self._last_tick = now
        # Name no leader until someone answered (or nobody will): a joining
        # node alone would otherwise crown itself for a moment.
        self._joined = not self._contacts
        self._join_deadline = now + self.config.election_timeout_s

    def _tick(self, now: float) -> None:
        period = self.config.heartbeat_interval_s
        if now - self._last_tick > 2 * period:
            self._forgive_stall(now)
        self._last_tick = now
        if now >= self._join_deadline:
            self._joined = True
        probe = self._probe
        if probe and not probe.indirect and now >= probe.sent_at + self.config.ping_timeout_s \
                and self._view[probe.target].state in _PROBED:
            self._ping_req(probe)
        if now >= self._next_probe:
            if self._probe is not None:
                self._set_state(self._probe.target, "suspect", now, only_from="alive")
            self._start_probe(now)
            self._next_probe = now + period
        for node_id, since in list(self._suspected_at.items()):
            if now - since >= self.config.election_timeout_s:
                self._set_state(node_id, "dead", now, only_from="suspect")
        if now >= self._next_sync:
            self._sync(now)
            self._next_sync = now + self.config.sync_interval_s
        self._relays = {seq: r for seq, r in self._relays.items() if r[3] > now}

    def _leave(self, now: float) -> None:
        self._incarnation += 1
        farewell = (self._own_entry("left"),)
        for node_id, entry in self._view.items():
            if entry.state in _PROBED:
                self._send_to(node_id, entry.address, GossipLeave, updates=farewell)

    def _remove(self, node_id: str, now: float) -> None:
        # A `left` entry at the member's own incarnation outranks every rumour of that
        # incarnation and spreads like any change; a node that is in fact alive refutes it.
        entry = self._view.get(node_id)
        if entry is not None and entry.state != "left":
            self._put(replace(entry, state="left"), entry, now)

    def _handle(self, msg: Any, now: float) -> None:
        if not isinstance(msg, GossipMessage):
            return
        self._joined = True
        self._term = max(self._term, msg.epoch)
        for entry in msg.updates:
            self._merge(entry, now)
        if isinstance(msg, GossipPing):
            self._send_to(msg.src, msg.src_address, GossipAck, seq=msg.seq)
        elif isinstance(msg, GossipAck):
            self._on_ack(msg)
        elif isinstance(msg, GossipPingReq):
            self._seq += 1
            expires = now + self.config.heartbeat_interval_s
            self._relays[self._seq] = (msg.src, msg.src_address, msg.seq, expires)
            self._send_to(msg.target, msg.target_address, GossipPing, seq=self._seq)
        elif isinstance(msg, GossipSync) and msg.reply_wanted:
            self._send_to(msg.src, msg.src_address, GossipSync, updates=self._full_state(), reply_wanted=False)

    def _before_finish(self) -> None:
        if not self._stopped and self._joined:
            self._choose_leader()

    # --- failure detection ---------------------------------------------------

    def _start_probe(self, now: float) -> None:
        target = self._next_target()
        self._probe = None
        if target is not None:
            self._seq += 1
            self._probe = _Probe(target, self._seq, now)
            self._send_to(target, self._view[target].address, GossipPing, seq=self._seq)

    def _next_target(self) -> str | None:
        for _ in range(2):
            while self._order:
                node_id = self._order.pop()
                entry = self._view.get(node_id)
                if entry is not None and entry.state in _PINGED:
                    return node_id
            self._order = [n for n, e in self._view.items() if e.state in _PINGED]
            self._rng.shuffle(self._order)
            self._reach_contacts()
        return None

    def _reach_contacts(self) -> None:
        """Once per round, offer our state to configured contacts we have no live entry for.

        They may have started after us, or come back after leaving; a node
        that knows nobody yet retries every period this way.
        """
        reached = {e.address for e in self._view.values() if e.state in _PINGED}
        for node_id, address in self._contacts:
            if address not in reached:
                self._send_to(node_id, address, GossipSync, updates=self._full_state(), reply_wanted=True)

    def _ping_req(self, probe: _Probe) -> None:
        probe.indirect = True
        helpers = [n for n, e in self._view.items() if e.state == "alive" and n != probe.target]
        target = self._view[probe.target]
        for node_id in self._rng.sample(helpers, min(self.config.ping_req_fanout, len(helpers))):
            self._send_to(node_id, self._view[node_id].address, GossipPingReq,
                          seq=probe.seq, target=target.node_id, target_address=target.address)

    def _on_ack(self, msg: GossipAck) -> None:
        if self._probe is not None and msg.seq == self._probe.seq:
            self._probe = None
            return
        relay = self._relays.pop(msg.seq, None)
        if relay is not None:
            requester, address, their_seq, _ = relay
            self._send_to(requester, address, GossipAck, seq=their_seq)

    def _forgive_stall(self, now: float) -> None:
        # We were paused (or starved): silence we measured is our own, not theirs.
        self._probe = None
        for node_id in self._suspected_at:
            self._suspected_at[node_id] = now
        self._next_probe = now

    def _sync(self, now: float) -> None:
        targets = [(n, e.address) for n, e in self._view.items() if e.state != "left"]
        if targets:
            node_id, address = self._rng.choice(targets)
            self._send_to(node_id, address, GossipSync, updates=self._full_state(), reply_wanted=True)

    # --- the view ------------------------------------------------------------

    def _merge(self, entry: GossipEntry, now: float) -> None:
        self._term = max(self._term, entry.lead_epoch)
        if entry.node_id == self.node_id:
            if entry.incarnation > self._incarnation or (
                    entry.incarnation == self._incarnation and entry.state != "alive"):
                self._incarnation = entry.incarnation + 1  # refute: our own entry rides on every message
            return
        old = self._view.get(entry.node_id)
        if old is None or supersedes(entry, old):
            self._put(entry, old, now)

    def _set_state(self, node_id: str, state: str, now: float, only_from: str) -> None:
        old = self._view.get(node_id)
        if old is not None and old.state == only_from:
            self._put(replace(old, state=state), old, now)

    def _put(self, entry: GossipEntry, old: GossipEntry | None, now: float) -> None:
        node_id = entry.node_id
        self._view[node_id] = entry
        self._queued[node_id] = 0
        self._view_changed = True
        if entry.state == "suspect":
            self._suspected_at.setdefault(node_id, now)
        else:
            self._suspected_at.pop(node_id, None)
        if old is not None and old.state == entry.state:
            return
        if entry.state == "alive":
            self._emit(MemberUp(node_id, entry.address))
        elif entry.state == "suspect":
            self._emit(MemberSuspect(node_id))
        elif old is not None:
            self._emit(MemberDown(node_id) if entry.state == "dead" else MemberLeft(node_id))

    def _choose_leader(self) -> None:
        was = self._leader
        best = self._best_member() if self._view_changed or was is None else was
        self._view_changed = False
        self._leader = best
        self._role = "leader" if best == self.node_id else "follower"
        if best != self.node_id:
            return
        # Claim a fresh epoch on taking over; re-claim (rate limited, so two
        # leaders with split views cannot race epochs up) if a higher one shows up.
        if was != best or self._lead_epoch == 0 or (
                self._term > self._lead_epoch and self._now - self._last_claim >= self.config.election_timeout_s):
            self._incarnation += 1
            self._lead_epoch = self._term = self._term + 1
            self._last_claim = self._now

    def _best_member(self) -> str:
        best, best_rank = self.node_id, rank_key(self.config.priority, self.node_id)
        for node_id, entry in self._view.items():
            if entry.state in _PROBED:
                rank = rank_key(entry.priority, node_id)
                if rank > best_rank:
                    best, best_rank = node_id, rank
        return best

    # --- messages ------------------------------------------------------------

    def _own_entry(self, state: str) -> GossipEntry:
        c = self.config
        return GossipEntry(self.node_id, c.address, c.priority, self._incarnation, state, self._lead_epoch)

    def _full_state(self) -> tuple[GossipEntry, ...]:
        return (self._own_entry("alive"), *self._view.values())

    def _piggyback(self, dst: str) -> tuple[GossipEntry, ...]:
        updates = [self._own_entry("alive")]
        theirs = self._view.get(dst)
        if theirs is not None and theirs.state != "alive":
            updates.append(theirs)  # let them refute right away
        limit = self.config.retransmit_mult * math.ceil(math.log2(len(self._view) + 2))
        fresh = sorted(self._queued.items(), key=lambda item: item[1])[: self.config.max_piggyback]
        for node_id, sent in fresh:
            updates.append(self._view[node_id])
            if sent + 1 >= limit:
                del self._queued[node_id]
            else:
                self._queued[node_id] = sent + 1
        return tuple(updates)

    def _send_to(self, node_id: str, address: str, cls: type, updates: tuple | None = None, **fields: Any) -> None:
        if updates is None:
            updates = self._piggyback(node_id)
        self._send(cls(src=self.node_id, dst=node_id, src_address=self.config.address,
                       dst_address=address, epoch=self._term, updates=updates, **fields))
