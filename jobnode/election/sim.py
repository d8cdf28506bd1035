"""A deterministic simulated network that runs election machines and checks them.

`Simulation` runs N nodes of one algorithm in simulated time. Every random
choice (message delay, loss, duplication, which node a fault hits, each
node's own generator) comes from one seed, so a schedule replays exactly.
Messages get an independent delay each, which reorders them; links can be
cut in one direction or both; nodes can crash (optionally "torn": the state
to persist reaches disk but the messages of that step are lost), restart
(raft from the state it persisted, the others from scratch), pause (no ticks,
no deliveries, then a time jump) and leave gracefully. Raft schedules may also
forge messages with absurd terms (far above the receiver's, above MAX_TERM, up
to 2**63 - 1) in a member's name, as a holder of the cluster's credentials could. The simulator writes
`Output.persist` to the node's disk before it lets that output's messages
out, which is the order the daemon must follow.

Safety is checked after every step and liveness after the last fault; a
failure raises `SafetyViolation` or `LivenessViolation` whose message names
the seed and how to replay it.

- raft: at most one leader per term over the whole history; a node's term
  never decreases (across restarts too); a node never grants two votes in one
  term (across restarts too); every message sent is covered by what is on
  disk (its term, and the vote a vote request or grant depends on); no term
  exceeds MAX_TERM, and a forged message raises its receiver's term by at
  most max_term_jump.
- raft membership: schedules also add servers (joining through one or two
  seeds), remove them (the leader among them) and let them depart, some at the
  moment a partition starts. Checked across configurations: still at most one
  leader per term; a committed entry is never lost or changed on any node; a
  new leader holds every committed entry; each configuration entry differs
  from the previous one by at most one server. Convergence also demands that
  the leader's configuration is committed and holds every node the schedule
  still wants as a member (joiners whose seeds all left excepted).
- bully and gossip: a node's epoch (and gossip incarnation) never decreases
  within one process lifetime.
- Convergence (all algorithms): after healing, every live node names the same
  leader with the same term and the leader knows it leads; bully's leader is
  the highest-ranked live node; gossip's views additionally agree that exactly
  the live nodes are alive, with no one left suspect.

Liveness bounds, with T the election timeout, h the heartbeat interval (the
protocol period P for gossip), d the largest message delay after healing and
t the tick interval (timers fire up to one tick late):

- raft: T for every follower's leader lease to lapse, h + 2d for a node with a
  higher term to reject a heartbeat and depose a stale leader, then up to R
  election rounds of at most 2T (randomized timeout) + 4d (pre-vote and vote
  round trips) + 2t each, and d + t for the winner's heartbeat to land:
  B = T + h + 2d + R(2T + 4d + 2t) + d + t, with R = 6, plus 2T + 6d + 3t for each
  membership change the schedule made (a request, a learner's catch-up, a commit). Rounds fail only on
  split votes, whose chance per round is small, so six back to back is rare.
- bully: a follower notices a dead or stale leader within T; an election
  costs at most A (answer timeout) + 2d, and a stale epoch is corrected by
  one heartbeat round trip h + 2d that triggers one more election; epochs can
  need up to three such corrections in a row (a node re-learning the epoch
  after a restart, then two crossing claims): B = T + 4(A + h + 4d + 2t).
- gossip: with m members, the shuffled round robin pings every member (dead
  ones included, which is how two sides that buried each other meet again,
  and unreached contacts get a sync once per round) within 2m periods; a
  crashed member is suspect one period later and dead S (suspicion timeout)
  after that; a change spreads in about r*ceil(log2(m+1)) periods (r =
  retransmit_mult); the leader re-claims its epoch at most once per S:
  B = (2m + 2 + r*ceil(log2(m+1)))P + 2S.

Run `python -m jobnode.election.sim stats` for convergence times per algorithm and
cluster size, `python -m jobnode.election.sim check ALGORITHM --count N --jobs J` for
a batch of random schedules, and `python -m jobnode.election.sim replay ALGORITHM
SEED` to rerun one schedule with its history printed.
"""

from __future__ import annotations

import argparse
import functools
import heapq
import json
import math
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import create
from .base import RaftPersistentState, rank_key
from .codec import decode, encode
from .config import CONFIG_CLASSES
from .messages import RaftAppendEntries, RaftAppendResult, RaftRequestVote, RaftTimeoutNow, RaftVote
from .raft import MAX_TERM, configuration_of


class SafetyViolation(AssertionError):
    """Something that must never happen did (two leaders in a term, a double vote...)."""


class LivenessViolation(AssertionError):
    """The cluster did not settle on one leader within the derived bound."""


_TICK, _DELIVER, _CALL = 0, 1, 2


@dataclass
class _Node:
    node_id: str
    address: str
    priority: int
    config: Any
    status: str = "down"  # up | crashed | paused | left | down (not started)
    machine: Any = None
    generation: int = 0
    token: int = 0  # bumps invalidate scheduled ticks
    disk: RaftPersistentState | None = None
    torn: bool = False
    high_term: int = 0
    high_incarnation: int = 0

    def __post_init__(self) -> None:
        self.tick_s = self.config.tick_interval_s


@dataclass
class ScheduleResult:
    """What one random schedule did and how long the cluster took to settle."""

    algorithm: str
    seed: int
    n: int
    convergence_s: float
    bound_s: float
    faults: list[str] = field(default_factory=list)


class Simulation:
    """N nodes of one algorithm on a seeded, fault-injectable network."""

    def __init__(self, algorithm: str, n: int = 3, *, seed: int = 0, priorities: list[int] | None = None,
                 timers: dict[str, Any] | None = None, join_via_seed: bool = False,
                 delay_s: tuple[float, float] = (0.0005, 0.01), loss: float = 0.0,
                 duplicate: float = 0.0, wire: bool = False, start: bool = True) -> None:
        self.algorithm = algorithm
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.delay_s, self.loss, self.duplicate, self.wire = delay_s, loss, duplicate, wire
        self.history: list[tuple[float, str, Any]] = []
        self.faults: list[str] = []
        self.messages_sent = 0
        self._queue: list[tuple[float, int, int, Any, Any]] = []
        self._seq = 0
        self._blocked: set[tuple[str, str]] = set()
        self._rules = _RULES[algorithm](self)
        self._timers = dict(timers or {})
        self.initial_n = n
        # Membership changes the schedule asked for: who should end up a member, who not.
        self.wants_member: set[str] = set()
        self.retired: set[str] = set()
        self.departing: dict[str, int] = {}  # node -> the generation that is departing
        ids = [f"n{i}" for i in range(1, n + 1)]
        priorities = priorities or [0] * n
        addresses = {i: f"sim://{i}" for i in ids}
        self.nodes: dict[str, _Node] = {}
        self._by_address: dict[str, _Node] = {}
        for node_id, priority in zip(ids, priorities, strict=True):
            config = self._config(node_id, priority, addresses, timers or {}, join_via_seed)
            node = _Node(node_id, addresses[node_id], priority, config)
            self.nodes[node_id] = node
            self._by_address[node.address] = node
        self.seed_nodes = ids[:2] if join_via_seed else []
        self.wants_member.update(ids)
        if start:
            for node_id in ids:
                self.restart(node_id)

    def _config(self, node_id: str, priority: int, addresses: dict[str, str], timers: dict[str, Any],
                join_via_seed: bool) -> Any:
        peers = {i: a for i, a in addresses.items() if i != node_id}
        fields: dict[str, Any] = {"node_id": node_id, "address": addresses[node_id], "priority": priority,
                                  "peers": peers, **timers}
        if join_via_seed and self.algorithm != "raft":
            fields["peers"] = {}
            fields["seeds"] = tuple(addresses[i] for i in list(addresses)[:2] if i != node_id)
        return CONFIG_CLASSES[self.algorithm](**fields)

    # --- observation ---------------------------------------------------------

    @property
    def config(self) -> Any:
        return next(iter(self.nodes.values())).config

    def live(self) -> list[str]:
        return [n.node_id for n in self.nodes.values() if n.status == "up"]

    def machine(self, node_id: str) -> Any:
        return self.nodes[node_id].machine

    def leaders(self) -> dict[str, str | None]:
        """Who each live node thinks leads."""
        return {i: self.nodes[i].machine.leader for i in self.live()}

    def converged(self) -> bool:
        return self._rules.converged()

    def bound_s(self) -> float:
        return self._rules.bound_s()

    def highest_live(self) -> str:
        live = self.live()
        return max(live, key=lambda i: rank_key(self.nodes[i].priority, i))

    # --- running -------------------------------------------------------------

    def run_until(self, t: float) -> None:
        queue = self._queue
        while queue and queue[0][0] <= t:
            when, _, kind, a, b = heapq.heappop(queue)
            self.now = when
            if kind == _TICK:
                self._tick(a, b)
            elif kind == _DELIVER:
                self._deliver(a)
            else:
                a()
        self.now = max(self.now, t)

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def at(self, t: float, action: Callable[[], None]) -> None:
        """Run `action` at simulated time `t`."""
        self._push(t, _CALL, action, None)

    def wait_for_convergence(self, bound_s: float | None = None, stable_s: float | None = None) -> float:
        """Run until converged and stable; return how long that took from now."""
        bound_s = self.bound_s() if bound_s is None else bound_s
        stable_s = self.config.election_timeout_s if stable_s is None else stable_s
        step = self.config.tick_interval_s
        start, stable_since = self.now, None
        while self.now <= start + bound_s + stable_s:
            if self.converged():
                stable_since = self.now if stable_since is None else stable_since
                if self.now - stable_since >= stable_s:
                    return stable_since - start
            else:
                stable_since = None
            if stable_since is None and self.now > start + bound_s:
                break
            self.run_for(step)
        self.fail(LivenessViolation, f"no single agreed leader within {bound_s:.3f}s after the last fault "
                  f"(leaders seen: {self.leaders()}, terms: {self._terms()})")
        raise AssertionError("unreachable")

    def fail(self, kind: type[AssertionError], what: str) -> None:
        label = "SAFETY" if kind is SafetyViolation else "LIVENESS"
        recent = "\n".join(f"    {t:9.4f} {who:>6} {item}" for t, who, item in self.history[-40:])
        replay = f"python -m jobnode.election.sim replay {self.algorithm} {self.seed} --n {self.initial_n}"
        raise kind(f"{label} violated: {what}\n"
                   f"  algorithm={self.algorithm} n={self.initial_n} seed={self.seed} t={self.now:.4f}s\n"
                   f"  replay (if from random_schedule): {replay}\n"
                   f"  faults: {self.faults}\n  recent history:\n{recent}")

    def _terms(self) -> dict[str, int]:
        return {i: self.nodes[i].machine.term for i in self.live()}

    # --- faults --------------------------------------------------------------

    def note(self, text: str) -> None:
        self.faults.append(f"{self.now:.3f}:{text}")
        self.history.append((self.now, "sim", text))

    def crash(self, node_id: str, torn: bool = False) -> None:
        node = self.nodes[node_id]
        if node.status in ("up", "paused"):
            self.note(f"crash {node_id}{' (torn)' if torn else ''}")
            if torn and node.status == "up":
                node.torn = True  # dies at its next step, after persisting, before sending
            else:
                self._down(node, "crashed")

    def restart(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.status == "up":
            return
        if node.status != "down":
            self.note(f"restart {node_id}")
        node.generation += 1
        node.token += 1
        node.status = "up"
        node.torn = False
        rng = random.Random(f"{self.seed}:{node_id}:{node.generation}")
        persisted = node.disk if self.algorithm == "raft" else None
        node.machine = create(self.algorithm, node.config, rng, persisted)
        if self.algorithm != "raft":
            node.high_term = node.high_incarnation = 0  # nothing survives a restart
        self._apply(node, node.machine.start(self.now))
        self._push(self.now + self.rng.random() * node.tick_s, _TICK, node_id, node.token)

    def pause(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.status == "up":
            self.note(f"pause {node_id}")
            node.status = "paused"
            node.token += 1

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.status == "paused":
            self.note(f"resume {node_id}")
            node.status = "up"
            node.token += 1
            self._push(self.now, _TICK, node_id, node.token)

    def leave(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.status == "up":
            self.note(f"leave {node_id}")
            self._apply(node, node.machine.leave(self.now))
            self._down(node, "left")

    # --- membership ----------------------------------------------------------

    def add_node(self, seeds: list[str]) -> str:
        """Start a new node that knows only `seeds` (existing node ids) and asks them to admit it."""
        node_id = f"n{len(self.nodes) + 1}"
        address = f"sim://{node_id}"
        fields: dict[str, Any] = {"node_id": node_id, "address": address, "peers": {},
                                  "seeds": tuple(self.nodes[i].address for i in seeds), **self._timers}
        node = _Node(node_id, address, 0, CONFIG_CLASSES[self.algorithm](**fields))
        self.nodes[node_id] = node
        self._by_address[address] = node
        self.wants_member.add(node_id)
        self.note(f"add {node_id} via {seeds}")
        self.restart(node_id)
        return node_id

    def remove_member(self, requester: str, target: str) -> None:
        """An operator at `requester` removes `target` (gone for good, or about to be)."""
        node = self.nodes[requester]
        if node.status == "up":
            self.note(f"remove {target} at {requester}")
            self.wants_member.discard(target)
            self.retired.add(target)
            self._apply(node, node.machine.remove_member(target, self.now))

    def depart(self, node_id: str, patience_s: float) -> None:
        """Leave the membership as the daemon does: depart, wait until departed (or out of
        patience), then leave."""
        node = self.nodes[node_id]
        if node.status != "up":
            return
        self.note(f"depart {node_id}")
        self.wants_member.discard(node_id)
        self.retired.add(node_id)
        self._apply(node, node.machine.depart(self.now))
        self.departing[node_id] = node.generation
        self._await_departure(node_id, node.generation, self.now + patience_s)

    def end_departures(self) -> None:
        """Let every node still waiting to depart leave now (its patience is over)."""
        for node_id, generation in list(self.departing.items()):
            if self.nodes[node_id].generation == generation:
                self.leave(node_id)
        self.departing.clear()

    def _await_departure(self, node_id: str, generation: int, deadline: float) -> None:
        node = self.nodes[node_id]
        if node.status != "up" or node.generation != generation:
            return
        if node.machine.departed or self.now >= deadline:
            self.departing.pop(node_id, None)
            self.leave(node_id)
            return
        self.at(self.now + node.tick_s, functools.partial(self._await_departure, node_id, generation, deadline))

    def forge_absurd_term(self, victim: str, rng: random.Random) -> None:
        """Deliver to `victim` a raft message in another member's name with a term far too high."""
        node = self.nodes[victim]
        others = [i for i in self.nodes if i != victim]
        if self.algorithm != "raft" or node.status != "up" or not others:
            return
        sender = self.nodes[rng.choice(others)]
        before, jump = node.machine.term, node.config.max_term_jump
        term = rng.choice((before + jump + rng.randint(1, 2**40), MAX_TERM + rng.randint(1, 2**40), 2**63 - 1))
        envelope = {"src": sender.node_id, "dst": victim, "src_address": sender.address,
                    "dst_address": node.address, "term": term}
        kind = rng.choice(("append", "append", "result", "pre_vote", "vote_request", "vote", "timeout_now"))
        if kind == "append":
            msg: Any = RaftAppendEntries(prev_log_index=0, prev_log_term=0, entries=(), leader_commit=0, **envelope)
        elif kind == "result":
            msg = RaftAppendResult(success=True, match_index=0, **envelope)
        elif kind in ("pre_vote", "vote_request"):
            msg = RaftRequestVote(last_log_index=0, last_log_term=0, pre_vote=kind == "pre_vote", transfer=True,
                                  **envelope)
        elif kind == "vote":
            msg = RaftVote(granted=True, pre_vote=rng.random() < 0.5, **envelope)
        else:
            msg = RaftTimeoutNow(**envelope)
        self.note(f"forge {kind} term {term} {sender.node_id}->{victim}")
        self._deliver(msg)
        after = node.machine.term if node.status == "up" else before
        if after > min(before + jump, MAX_TERM) and after > before:
            self.fail(SafetyViolation, f"a forged term {term} moved {victim} from term {before} to {after}")

    def block(self, src: str, dst: str) -> None:
        self.note(f"block {src}->{dst}")
        self._blocked.add((src, dst))

    def partition(self, *groups: list[str] | set[str]) -> None:
        """Cut every link between different groups (nodes in no group are cut off from all)."""
        side = {n: i for i, g in enumerate(groups) for n in g}
        self.note(f"partition {[sorted(g) for g in groups]}")
        for a in self.nodes:
            for b in self.nodes:
                if a != b and (side.get(a) is None or side.get(a) != side.get(b)):
                    self._blocked.add((a, b))

    def heal(self) -> None:
        self.note("heal")
        self._blocked.clear()

    def set_network(self, *, delay_s: tuple[float, float] | None = None, loss: float | None = None,
                    duplicate: float | None = None) -> None:
        self.delay_s = delay_s if delay_s is not None else self.delay_s
        self.loss = loss if loss is not None else self.loss
        self.duplicate = duplicate if duplicate is not None else self.duplicate
        self.note(f"network delay={self.delay_s} loss={self.loss:.2f} dup={self.duplicate:.2f}")

    # --- internals -----------------------------------------------------------

    def _push(self, when: float, kind: int, a: Any, b: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, kind, a, b))

    def _down(self, node: _Node, status: str) -> None:
        node.status = status
        node.token += 1

    def _tick(self, node_id: str, token: int) -> None:
        node = self.nodes[node_id]
        if node.token != token or node.status != "up":
            return
        self._apply(node, node.machine.on_tick(self.now))
        self._push(self.now + node.tick_s, _TICK, node_id, token)

    def _deliver(self, msg: Any) -> None:
        node = self._by_address.get(msg.dst_address)
        if node is None or node.status != "up" or (msg.src, node.node_id) in self._blocked:
            return
        if self.wire:
            msg = decode(json.loads(json.dumps(encode(msg))))
        self._apply(node, node.machine.on_message(msg, self.now))

    def _apply(self, node: _Node, out: Any) -> None:
        if out.persist is not None:
            node.disk = out.persist  # durable first...
        sent = [] if node.torn else out.messages
        for event in out.events:
            self.history.append((self.now, node.node_id, event))
        self._rules.after_step(node, sent)
        if node.torn:
            self.history.append((self.now, node.node_id, "died before sending"))
            self._down(node, "crashed")
            return
        for msg in sent:  # ...then the messages
            self._transmit(node, msg)

    def _transmit(self, node: _Node, msg: Any) -> None:
        if msg.src != node.node_id or msg.src_address != node.address:
            self.fail(SafetyViolation, f"{node.node_id} sent a message with a wrong envelope: {msg}")
        self.messages_sent += 1
        target = self._by_address.get(msg.dst_address)
        if target is None or (node.node_id, target.node_id) in self._blocked:
            return
        rng = self.rng
        if rng.random() < self.loss:
            return
        copies = 2 if rng.random() < self.duplicate else 1
        low, high = self.delay_s
        for _ in range(copies):
            self._push(self.now + low + (high - low) * rng.random(), _DELIVER, msg, None)


# --- per-algorithm rules ------------------------------------------------------


class _Rules:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def after_step(self, node: _Node, sent: list[Any]) -> None:
        machine = node.machine
        if machine.term < node.high_term:
            self.sim.fail(SafetyViolation, f"{node.node_id}'s term went back from {node.high_term} to {machine.term}")
        node.high_term = machine.term
        if machine.role == "leader" and machine.leader != node.node_id:
            self.sim.fail(SafetyViolation, f"{node.node_id} is leader but names {machine.leader}")

    def agreed_leader(self) -> str | None:
        """The leader every live node names with one term, if there is one and it knows."""
        sim = self.sim
        live = sim.live()
        if not live:
            return None
        first = sim.nodes[live[0]].machine
        leader, term = first.leader, first.term
        if leader is None or leader not in live or sim.nodes[leader].machine.role != "leader":
            return None
        for node_id in live:
            m = sim.nodes[node_id].machine
            if m.leader != leader or m.term != term:
                return None
        return leader

    def converged(self) -> bool:
        return self.agreed_leader() is not None

    def bound_s(self) -> float:
        """How long after the last fault the cluster may take to converge."""
        raise NotImplementedError

    def slack(self) -> tuple[float, float]:
        sim = self.sim
        return sim.delay_s[1], sim.config.tick_interval_s


class _RaftRules(_Rules):
    R = 6

    def __init__(self, sim: Simulation) -> None:
        super().__init__(sim)
        self.leader_of_term: dict[int, str] = {}
        self.vote_of: dict[tuple[str, int], str] = {}
        self.committed: dict[int, int] = {}  # log index -> term of the entry committed there
        self._seen: dict[str, tuple[int, int, int]] = {}  # node -> (log length, last term, commit)

    def after_step(self, node: _Node, sent: list[Any]) -> None:
        super().after_step(node, sent)
        m, sim = node.machine, self.sim
        if m.term > MAX_TERM:
            sim.fail(SafetyViolation, f"{node.node_id} adopted term {m.term}, above MAX_TERM")
        if m.role == "leader":
            first = self.leader_of_term.setdefault(m.term, node.node_id)
            if first != node.node_id:
                sim.fail(SafetyViolation, f"two leaders in term {m.term}: {first} and {node.node_id}")
        shape = (*m.last_log, m.commit_index, m.role == "leader")
        if self._seen.get(node.node_id) != shape:
            self._seen[node.node_id] = shape
            self._check_log(node, m.log, m.commit_index, m.role == "leader")
        disk = node.disk or RaftPersistentState()
        for msg in sent:
            pre = getattr(msg, "pre_vote", False)
            if not pre and msg.term > disk.term:
                sim.fail(SafetyViolation, f"{node.node_id} sent term {msg.term} with only term {disk.term} on disk")
            if isinstance(msg, RaftRequestVote) and not pre:
                self._vote(node, msg.term, node.node_id, disk)
            elif isinstance(msg, RaftVote) and msg.granted and not pre:
                self._vote(node, msg.term, msg.dst, disk)

    def _check_log(self, node: _Node, log: tuple[Any, ...], commit: int, leading: bool) -> None:
        """Committed entries are never lost or changed; configurations change one server at a time."""
        sim = self.sim
        if commit > len(log):
            sim.fail(SafetyViolation, f"{node.node_id} commits index {commit} beyond its log of {len(log)}")
        for index in range(1, commit + 1):
            term = self.committed.setdefault(index, log[index - 1].term)
            if term != log[index - 1].term:
                sim.fail(SafetyViolation, f"{node.node_id} committed term {log[index - 1].term} at index {index} "
                         f"where term {term} was committed before")
        if leading:
            for index, term in self.committed.items():
                if index > len(log) or log[index - 1].term != term:
                    sim.fail(SafetyViolation, f"leader {node.node_id} lacks committed entry {index} (term {term})")
        previous = None
        for entry in log:
            members = configuration_of(entry)
            if members is None:
                continue
            if previous is not None and len(previous.keys() ^ members.keys()) > 1:
                sim.fail(SafetyViolation, f"{node.node_id}'s log changes more than one server at once: "
                         f"{sorted(previous)} -> {sorted(members)} at index {entry.index}")
            previous = members

    def converged(self) -> bool:
        """One leader of the highest term that every live voter follows, its configuration
        committed, and every node the schedule still wants as a member in it."""
        sim = self.sim
        live = sim.live()
        leaders = [i for i in live if sim.nodes[i].machine.role == "leader"]
        if not leaders:
            return False
        leader = max(leaders, key=lambda i: sim.nodes[i].machine.term)
        lm = sim.nodes[leader].machine
        config = lm.configuration
        if lm.commit_index < lm.configuration_index:
            return False
        for node_id in live:
            m = sim.nodes[node_id].machine
            if node_id in config and (m.leader != leader or m.term != lm.term):
                return False
        # A joiner can get in only through a seed that is a live member (or passes requests on
        # to one); one whose seeds all left the cluster waits, as it would in production.
        seeds_in = {sim.nodes[i].address for i in config if i in live}
        wanted = {i for i in sim.wants_member & set(live)
                  if not sim.nodes[i].machine.joining or seeds_in & set(sim.nodes[i].config.seeds)}
        return wanted <= config.keys()

    def _vote(self, node: _Node, term: int, candidate: str, disk: RaftPersistentState) -> None:
        if disk.term != term or disk.voted_for != candidate:
            self.sim.fail(SafetyViolation, f"{node.node_id} voted for {candidate} in term {term} "
                          f"but its disk says {disk}")
        first = self.vote_of.setdefault((node.node_id, term), candidate)
        if first != candidate:
            self.sim.fail(SafetyViolation, f"{node.node_id} voted twice in term {term}: {first} and {candidate}")

    def bound_s(self) -> float:
        c = self.sim.config
        d, t = self.slack()
        T, h = c.election_timeout_s, c.heartbeat_interval_s
        elect = T + h + 2 * d + self.R * (2 * T + 4 * d + 2 * t) + d + t
        # Each outstanding change waits for a request (sent every T), a learner's catch-up and
        # a commit: about T + 6d + 3t, one change after the other. Changes asked of a node that
        # then crashed are lost with it, so this counts every node the schedule touched.
        changes = len(self.sim.nodes) - self.sim.initial_n + len(self.sim.retired)
        return elect + changes * (2 * T + 6 * d + 3 * t)


class _BullyRules(_Rules):
    def converged(self) -> bool:
        return self.agreed_leader() == self.sim.highest_live()

    def bound_s(self) -> float:
        c = self.sim.config
        d, t = self.slack()
        return c.election_timeout_s + 4 * (c.answer_timeout_s + c.heartbeat_interval_s + 4 * d + 2 * t)


class _GossipRules(_Rules):
    def after_step(self, node: _Node, sent: list[Any]) -> None:
        super().after_step(node, sent)
        inc = node.machine.incarnation
        if inc < node.high_incarnation:
            self.sim.fail(SafetyViolation, f"{node.node_id}'s incarnation went back to {inc}")
        node.high_incarnation = inc

    def converged(self) -> bool:
        sim = self.sim
        live = set(sim.live())
        if self.agreed_leader() != sim.highest_live():
            return False
        for node_id in live:
            members = sim.nodes[node_id].machine.members
            alive = {i for i, m in members.items() if m.state == "alive"}
            if alive != live or any(m.state == "suspect" for m in members.values()):
                return False
        return True

    def bound_s(self) -> float:
        c = self.sim.config
        m = len(self.sim.nodes)
        P, S = c.heartbeat_interval_s, c.election_timeout_s
        spread = c.retransmit_mult * math.ceil(math.log2(m + 1))
        return (2 * m + 2 + spread) * P + 2 * S


_RULES = {"raft": _RaftRules, "bully": _BullyRules, "gossip": _GossipRules}


# --- random schedules ---------------------------------------------------------

SIZES = (1, 2, 3, 3, 3, 4, 5, 5, 7)


def random_schedule(algorithm: str, seed: int, n: int | None = None, *, fault_window: float = 6.0,
                    max_faults: int = 6, verbose: bool = False) -> ScheduleResult:
    """Run one random schedule: faults for a while, then heal and demand a leader in time."""
    rng = random.Random(f"schedule:{algorithm}:{seed}")
    drawn = rng.choice(SIZES)  # drawn even when n is given, so `--n` replays the same schedule
    n = n if n is not None else drawn
    base_delay = (0.0005, rng.uniform(0.002, 0.02))
    options: dict[str, Any] = {
        "priorities": [rng.choice((0, 0, 1, 2)) for _ in range(n)] if rng.random() < 0.3 else None,
        "join_via_seed": algorithm != "raft" and rng.random() < 0.25,
        "wire": rng.random() < 0.1,
    }
    sim = Simulation(algorithm, n, seed=seed, delay_s=base_delay, duplicate=rng.choice((0.0, 0.0, 0.05)),
                     start=False, **options)
    T = sim.config.election_timeout_s
    for node_id in sim.nodes:
        sim.at(rng.random() * T / 2 if rng.random() < 0.3 else 0.0, functools.partial(sim.restart, node_id))
    fault_end = rng.uniform(0.5, fault_window) * T
    for _ in range(rng.randint(0, max_faults)):
        sim.at(rng.uniform(0, fault_end), lambda: _random_fault(sim))
    if rng.random() < 0.4:
        # Hitting the leader just before healing is what makes convergence work hardest.
        sim.at(fault_end - rng.uniform(0, T / 2), lambda: _strike_leader(sim))
    if algorithm == "raft":
        # Its own stream, drawn last: the schedules of the faults above stay what they were.
        forger = random.Random(f"forge:{seed}")
        for _ in range(forger.choice((0, 0, 1, 3))):
            victim = forger.choice(list(sim.nodes))
            sim.at(forger.uniform(0, fault_end), functools.partial(sim.forge_absurd_term, victim, forger))
        changer = random.Random(f"members:{seed}")
        for _ in range(changer.choice((0, 0, 1, 2, 3))):
            sim.at(changer.uniform(0, fault_end), functools.partial(_random_membership_change, sim, changer))
    sim.run_until(fault_end)
    _heal_all(sim, base_delay)
    if algorithm == "raft":
        _keep_majorities(sim, sim.now + sim.bound_s())
    convergence = sim.wait_for_convergence()
    result = ScheduleResult(algorithm, seed, n, convergence, sim.bound_s(), sim.faults)
    if verbose:
        for t, who, item in sim.history:
            print(f"{t:9.4f} {who:>6} {item}")
    return result


def _random_fault(sim: Simulation) -> None:
    rng, ids = sim.rng, list(sim.nodes)
    up = sim.live()
    kind = rng.choice(("partition", "partition", "asymmetric", "crash", "crash", "restart", "restart",
                       "pause", "pause", "leave", "heal", "network"))
    if kind == "partition" and len(ids) > 1:
        sides = rng.choice((2, 2, 3))
        groups: list[list[str]] = [[] for _ in range(sides)]
        for node_id in ids:
            rng.choice(groups).append(node_id)
        sim.partition(*groups)
    elif kind == "asymmetric" and len(ids) > 1:
        for _ in range(rng.randint(1, len(ids))):
            src, dst = rng.sample(ids, 2)
            sim.block(src, dst)
    elif kind == "crash" and up:
        sim.crash(rng.choice(up), torn=sim.algorithm == "raft" and rng.random() < 0.3)
    elif kind == "restart":
        down = [i for i in ids if sim.nodes[i].status in ("crashed", "left")]
        if down:
            sim.restart(rng.choice(down))
    elif kind == "pause" and up:
        victim = rng.choice(up)
        sim.pause(victim)
        sim.at(sim.now + rng.uniform(0.5, 4) * sim.config.election_timeout_s, lambda: sim.resume(victim))
    elif kind == "leave" and up:
        sim.leave(rng.choice(up))
    elif kind == "heal":
        sim.heal()
    elif kind == "network":
        slow = rng.uniform(0.005, sim.config.election_timeout_s / 2)
        sim.set_network(delay_s=(0.0005, slow), loss=rng.choice((0.0, 0.1, 0.3, 0.6)))


def _random_membership_change(sim: Simulation, rng: random.Random) -> None:
    """Add a server, remove one (the leader among them) or let one depart, sometimes cutting
    the network at the same moment."""
    up = sim.live()
    if not up:
        return
    kind = rng.choice(("add", "add", "remove", "remove_leader", "depart"))
    if rng.random() < 0.3 and len(sim.nodes) > 1:
        ids = list(sim.nodes)
        sim.partition(*[ids[:len(ids) // 2], ids[len(ids) // 2:]][::rng.choice((1, -1))])
    if kind == "add" and len(sim.nodes) < 9:
        sim.add_node(rng.sample(up, min(len(up), rng.choice((1, 2)))))
    elif kind == "remove":
        requester = rng.choice(up)
        members = sorted(sim.machine(requester).configuration)
        if len(members) > 1:
            sim.remove_member(requester, rng.choice(members))
    elif kind == "remove_leader":
        leaders = [i for i in up if sim.machine(i).role == "leader"]
        if leaders and len(sim.machine(leaders[0]).configuration) > 1:
            sim.note(f"the leader {leaders[0]} departs")
            sim.depart(leaders[0], patience_s=6 * sim.config.election_timeout_s)
    elif kind == "depart" and len(up) > 1:
        sim.depart(rng.choice(up), patience_s=6 * sim.config.election_timeout_s)


def _strike_leader(sim: Simulation) -> None:
    leaders = [i for i in sim.live() if sim.machine(i).role == "leader"]
    if leaders:
        victim = sim.rng.choice(leaders)
        action = sim.rng.choice((sim.crash, sim.leave, sim.pause))
        action(victim)


def _heal_all(sim: Simulation, base_delay: tuple[float, float]) -> None:
    """End every fault; restart enough nodes for the algorithm to be able to elect."""
    sim.end_departures()
    sim.heal()
    sim.set_network(delay_s=base_delay, loss=0.0)
    for node_id, node in sim.nodes.items():
        if node.status == "paused":
            sim.resume(node_id)
        node.torn = False
    ids = list(sim.nodes)
    needed = len(ids) // 2 + 1 if sim.algorithm == "raft" else 1
    down = [i for i in ids if sim.nodes[i].status in ("crashed", "left", "down")]
    sim.rng.shuffle(down)
    for node_id in down:
        touched = node_id in sim.retired or int(node_id[1:]) > sim.initial_n
        if len(sim.live()) < needed or node_id in sim.seed_nodes[:1] or sim.rng.random() < 0.5 \
                or (sim.algorithm == "raft" and (touched or not _majorities_live(sim))):
            # A removed node comes back too: its removal may not have committed, and then the
            # configuration still counts on it (a committed removal leaves it a bystander).
            sim.restart(node_id)


def _keep_majorities(sim: Simulation, until: float) -> None:
    """After healing, restart a down node whenever some configuration lacks a live majority.

    A removal queued before the heal can commit after it (leaving a configuration that needs
    a node the heal chose to leave down); an operator would bring that node back, so does this.
    """
    if not _majorities_live(sim):
        down = sorted(i for i, n in sim.nodes.items() if n.status in ("crashed", "left", "down"))
        if down:
            sim.restart(sim.rng.choice(down))
    if sim.now < until:
        sim.at(sim.now + sim.config.election_timeout_s / 2, functools.partial(_keep_majorities, sim, until))


def _majorities_live(sim: Simulation) -> bool:
    """Whether every configuration some raft node goes by has a live majority."""
    live = set(sim.live())
    for node in sim.nodes.values():
        config = node.machine.configuration if node.machine is not None else {}
        if config and len(live & config.keys()) < len(config) // 2 + 1:
            return False
    return True


# --- batches and reports -------------------------------------------------------


def check_schedules(algorithm: str, seeds: range) -> tuple[list[float], list[str]]:
    """Run `random_schedule` for each seed; return convergence times and failure reports."""
    times, failures = [], []
    for seed in seeds:
        try:
            times.append(random_schedule(algorithm, seed).convergence_s)
        except (SafetyViolation, LivenessViolation) as failure:
            failures.append(str(failure))
    return times, failures


def check_many(algorithm: str, start: int, count: int, jobs: int = 1,
               batch: int = 250) -> tuple[list[float], list[str]]:
    """`check_schedules` over seeds start..start+count, spread over `jobs` processes."""
    batches = [range(s, min(s + batch, start + count)) for s in range(start, start + count, batch)]
    if jobs <= 1:
        parts = [check_schedules(algorithm, seeds) for seeds in batches]
    else:
        from concurrent.futures import ProcessPoolExecutor  # noqa: PLC0415 - only batch runs need it
        with ProcessPoolExecutor(jobs) as pool:
            parts = list(pool.map(check_schedules, [algorithm] * len(batches), batches))
    return [t for times, _ in parts for t in times], [f for _, failures in parts for f in failures]



def failover_times(algorithm: str, n: int, runs: int, seed: int = 0) -> list[float]:
    """Seconds from killing a settled leader until the rest agree on a new one."""
    times = []
    for i in range(runs):
        sim = Simulation(algorithm, n, seed=seed + i, delay_s=(0.0005, 0.005))
        sim.wait_for_convergence(stable_s=0)
        sim.crash(sim.highest_live() if algorithm != "raft" else _raft_leader(sim))
        if n > 1 and (algorithm != "raft" or n >= 3):
            times.append(sim.wait_for_convergence(stable_s=0))
    return times


def _raft_leader(sim: Simulation) -> str:
    return next(i for i in sim.live() if sim.machine(i).role == "leader")


def summarize(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]
    return f"median {statistics.median(ordered):.3f}s  p99 {p99:.3f}s  max {ordered[-1]:.3f}s"


def stats(runs: int) -> None:
    print(f"{'algorithm':9} {'n':>2}  {'after random faults (heal -> agreed leader)':58} failover (leader killed)")
    for algorithm in ("bully", "raft", "gossip"):
        for n in (3, 5, 9):
            healed = [random_schedule(algorithm, s, n).convergence_s for s in range(runs)]
            failover = failover_times(algorithm, n, runs)
            print(f"{algorithm:9} {n:>2}  {summarize(healed):58} {summarize(failover)}")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m jobnode.election.sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("stats", help="convergence time distributions for 3, 5 and 9 nodes")
    s.add_argument("--runs", type=int, default=300)
    c = sub.add_parser("check", help="run many random schedules and report failures")
    c.add_argument("algorithm", choices=sorted(_RULES))
    c.add_argument("--count", type=int, default=1000)
    c.add_argument("--start", type=int, default=0)
    c.add_argument("--jobs", type=int, default=1)
    r = sub.add_parser("replay", help="rerun one random schedule and print its history")
    r.add_argument("algorithm", choices=sorted(_RULES))
    r.add_argument("seed", type=int)
    r.add_argument("--n", type=int)
    args = parser.parse_args(argv)
    if args.command == "stats":
        stats(args.runs)
    elif args.command == "check":
        times, failures = check_many(args.algorithm, args.start, args.count, args.jobs)
        for failure in failures[:3]:
            print(failure, end="\n\n")
        print(f"{args.algorithm}: {args.count} schedules, {len(failures)} failed; convergence {summarize(times)}")
        sys.exit(1 if failures else 0)
    else:
        result = random_schedule(args.algorithm, args.seed, args.n, verbose=True)
        print(replace(result, faults=[]), "\nfaults:", result.faults)


if __name__ == "__main__":
    main()
