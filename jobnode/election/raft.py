"""Raft leader election and membership: a majority vote per term, with PreVote, CheckQuorum,
transfer, and configuration changes one server at a time.

How it works
------------
Time is cut into numbered terms. A follower that hears nothing from a leader
for a randomized timeout in [T, 2T) first runs a pre-vote: it asks the others
whether they *would* vote for it in the next term, without changing any term.
Only with a majority of yeses does it bump its term, vote for itself and ask
for real votes; a majority of votes in that term makes it leader. Each node
grants at most one vote per term and refuses candidates whose log is behind
its own.
The leader sends AppendEntries heartbeats every heartbeat interval. Term and
vote are returned in `Output.persist` and must be on disk before that output's
messages leave: that is what makes "one vote per term" survive a crash.

Two rules keep a healthy cluster stable. Leader stickiness: a node that heard
from a leader within T ignores (pre-)vote requests, so a node rejoining from a
partition cannot depose a working leader. CheckQuorum: a leader that has not
heard from a majority within T steps down, so a leader cut off in a minority
stops claiming leadership. On graceful shutdown the leader sends TimeoutNow to
its most up-to-date live follower, which campaigns at once and, flagged as a
transfer, is not blocked by stickiness.

Membership lives in the log, which holds only that: configuration entries (each names every voting
member and its address) and the no-op a new leader appends so that it commits
an entry of its own term before it changes anything. A server uses the latest
configuration in its log, committed or not, from the moment it appends it; with
none in the log it uses the first configuration: `peers` plus itself, nobody
when it has no peers but `seeds` (it joins), itself alone with neither.

Changes go through the leader one server at a time, so the majorities of the
old and the new configuration always overlap and no two leaders can be elected
in one term across a change. The leader accepts a change only when the previous
one is committed and an entry of its own term is. Adding: the new server is
first a non-voting learner that receives the log; once it holds the leader's
whole log the leader appends the configuration that includes it (a learner that
does not catch up within a few election timeouts is dropped). Removing: the
leader appends the configuration without it; a leader that removes itself keeps
leading (without counting itself) until that entry commits, then steps down and
hands over with TimeoutNow. A joining node sends `RaftChangeRequest` to its seeds
every election timeout until it is in a committed configuration; members that
do not lead pass requests on to the leader they know. `remove_member` and
`depart` queue a removal that is retried the same way. A server removed while it
runs does not ask back in; restarted with seeds, it does.

Guarantees
----------
- At most one leader per term, ever, provided `Output.persist` is written durably before the
  output's messages are sent.
- A node's term never decreases, and a node never votes twice in one term, across restarts too.
- A node cut off in a minority cannot raise its term (PreVote), so on healing it does not depose
  the majority's leader.
- With a majority up and able to talk, a leader is elected within a few election timeouts
  (randomized timeouts make repeated split votes unlikely).

Failure modes
-------------
- No majority, no leader: with half or more of the nodes down or unreachable, nobody leads.
- Leadership is per term, not per instant: an old leader that is paused or partitioned may still
  believe it leads for up to T (CheckQuorum) while a newer term has a leader. The daemon's Redis
  fencing token is what stops it from dispatching.
- A split vote costs another randomized timeout; liveness is probabilistic, not bounded.
- A node that raised its term in a partition (after a successful pre-vote) forces one extra
  election when it returns.
- A configuration change needs a majority of the current configuration: with half or more of
  the members gone, not even removing them is possible (that is the point of a majority).
- The log is kept whole (one no-op per elected leader plus one entry per change); it is small
  for any realistic number of elections, but it is never compacted.
- Absurd terms. Terms grow by one per election, so a message whose term is far above ours is a
  forgery or a bug, and adopting it could leave the cluster at a term whose successor cannot be
  encoded (no election could ever succeed again, and the term is persisted). Two rules bound it:
  a term above MAX_TERM is dropped outright, and a term more than `max_term_jump` above ours is
  not adopted: the message is dropped, and if its term is the sender's own (not a pre-vote's
  proposal) we move up by `max_term_jump` towards it, so a node far behind (its state lost
  after many elections) still catches up, one step per message. Reaching MAX_TERM therefore takes
  MAX_TERM / max_term_jump messages; a node at MAX_TERM no longer campaigns. Dropping and raising
  one's own term are both moves plain Raft already makes, so the guarantees above hold.

Best for
--------
3 to 7 nodes that need a leader they can trust per term, and that can afford to lose a minority.

Parameters
----------
- node_id: this node's unique id.
- address: how other nodes reach this node (opaque to the algorithm, e.g. its peer URL).
- priority: unused by raft's vote (kept for a common configuration); shown in members.
- peers: the other members of the first configuration, node_id to address (configuration entries in
  the log override it).
- seeds: addresses of existing members to ask for admission when there are no peers.
- found: with seeds but no peers, found a cluster of one instead of waiting for admission (the
  daemon sets it on the node that is the first of its seeds).
- election_timeout_s: T; followers wait a random time in [T, 2T) before campaigning, leaders step
  down after T without a majority, and stickiness lasts T.
- heartbeat_interval_s: how often the leader sends AppendEntries; keep it well below T.
- pre_vote: run a pre-vote round before raising the term (default on).
- check_quorum: step down without a majority for T, and ignore vote requests while a leader is
  fresh (default on).
- max_term_jump: the most a single message may raise our term (default 10,000; see "Absurd
  terms").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from .base import Machine, Member, MemberSuspect, MemberUp, RaftPersistentState, rank_key
from .config import RaftConfig
from .messages import (
    RaftAppendEntries,
    RaftAppendResult,
    RaftChangeRequest,
    RaftEntry,
    RaftMessage,
    RaftRequestVote,
    RaftTimeoutNow,
    RaftVote,
)

# The highest term a node adopts: far below the codec's 2**63 (and exact in any JSON reader), so
# that term + 1, which every election needs, is always a term the other nodes can decode.
MAX_TERM = 2**53
# Entries per AppendEntries: a learner far behind catches up in several round trips.
MAX_BATCH = 64
# A learner that has not caught up within this many election timeouts is dropped (it is
# probably gone); it asks again if it is not.
LEARNER_PATIENCE = 10
NOOP = '{"noop":true}'
CHANGE_ACTIONS = ("add", "remove")


def configuration_data(members: Mapping[str, str]) -> str:
    """A configuration entry's text: every voting member and its address."""
    return json.dumps({"config": dict(sorted(members.items()))}, separators=(",", ":"))


def configuration_of(entry: RaftEntry) -> dict[str, str] | None:
    """The member set a log entry holds, or None for a no-op (or anything unreadable)."""
    try:
        data = json.loads(entry.data)
    except ValueError:
        return None
    members = data.get("config") if isinstance(data, dict) else None
    if not isinstance(members, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                for k, v in members.items()):
        return None
    return members


class Raft(Machine):
    """One Raft node's election and membership state machine."""

    def __init__(self, config: RaftConfig, rng: Any, persisted: RaftPersistentState | None = None) -> None:
        super().__init__(config)
        self._rng = rng
        self._t = config.election_timeout_s
        saved = persisted or RaftPersistentState()
        self._term = saved.term
        self._voted_for = saved.voted_for
        self._saved = saved
        self._log: list[RaftEntry] = list(saved.log)
        self._log_dirty = False
        self._commit = 0
        if config.peers or not config.seeds or config.found:
            self._first = {**config.peers, self.node_id: config.address}
        else:
            self._first = {}
        self._addresses: dict[str, str] = {**config.peers, self.node_id: config.address}
        self._config: dict[str, str] = {}
        self._config_index = 0
        self._previous: dict[str, str] = {}
        self._votes: set[str] = set()
        self._deadline = float("inf")
        self._leader_contact = float("-inf")
        self._heard: dict[str, float] = {}
        self._alive: dict[str, bool] = {}
        self._next_index: dict[str, int] = {}
        self._match_index: dict[str, int] = {}
        self._learners: dict[str, float] = {}  # node -> when it started catching up
        self._farewell_sent_for = 0  # the configuration index whose removed servers were told
        self._removals: set[str] = set()
        self._departing = False
        self._next_request = float("-inf")
        self._next_heartbeat = 0.0
        self._reload_configuration()
        # In the first configuration and not dropped by a later one: no need to ask to join.
        self._admitted = self.node_id in self._first and self.node_id in self._config

    # --- what the daemon and the simulator read ------------------------------

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def log(self) -> tuple[RaftEntry, ...]:
        return tuple(self._log)

    @property
    def last_log(self) -> tuple[int, int]:
        """(term, index) of the last entry, without copying the log."""
        return self._last_log()

    @property
    def commit_index(self) -> int:
        return self._commit

    @property
    def configuration(self) -> dict[str, str]:
        """The voting members this node goes by (its log's latest configuration)."""
        return dict(self._config)

    @property
    def configuration_index(self) -> int:
        """The log index of that configuration (0: the first configuration, not in the log)."""
        return self._config_index

    @property
    def learners(self) -> tuple[str, ...]:
        return tuple(self._learners)

    @property
    def joining(self) -> bool:
        """Asking the seeds for admission: not yet seen in a committed configuration since start.

        An uncommitted configuration naming us is no admission (a new leader may not have it);
        a leader that has us already ignores the request. A server removed while it runs does
        not ask back in; after a restart it does (that is how a node that left on shutdown
        comes back).
        """
        return not self._admitted and not self._departing and bool(self.config.seeds)

    @property
    def departed(self) -> bool:
        return self.node_id not in self._config and self._commit >= self._config_index

    @property
    def members(self) -> Mapping[str, Member]:
        view = {self.node_id: Member(self.node_id, self.config.address, "alive", self.config.priority)}
        for peer, address in self._config.items():
            if peer != self.node_id:
                # Only a leader judges the others; a follower shows members as alive until then.
                view[peer] = Member(peer, address, "alive" if self._alive.get(peer, True) else "suspect")
        return view

    # --- entry points --------------------------------------------------------

    def _start(self, now: float) -> None:
        self._emit(MemberUp(self.node_id, self.config.address))
        self._reset_timer(now)
        self._send_requests(now)

    def _tick(self, now: float) -> None:
        if self._role == "leader":
            self._check_quorum(now)
        if self._role == "leader":
            self._drop_slow_learners(now)
            if now >= self._next_heartbeat:
                self._broadcast_heartbeat(now)
        elif now >= self._deadline:
            if self._may_campaign():
                self._campaign(now, pre=self.config.pre_vote)
            else:
                self._leader = None  # a non-voter names a leader only while it hears from one
                self._reset_timer(now)
        if now >= self._next_request:
            self._send_requests(now)

    def _leave(self, now: float) -> None:
        if self._role != "leader":
            return
        best = self._successor(now)
        if best is not None:
            self._send_to(best, RaftTimeoutNow, term=self._term)

    def _remove(self, node_id: str, now: float) -> None:
        self._removals.add(node_id)
        self._send_requests(now)

    def _depart(self, now: float) -> None:
        self._departing = True
        self._removals.add(self.node_id)
        self._send_requests(now)

    def _handle(self, msg: Any, now: float) -> None:
        if not isinstance(msg, RaftMessage):
            return
        # Anyone holding the cluster's credentials may talk: a server being added is not
        # in anyone's configuration yet. Only the voters of a configuration count in it.
        self._addresses.setdefault(msg.src, msg.src_address)
        if isinstance(msg, RaftChangeRequest):
            self._on_change_request(msg, now)
            return
        self._note_contact(msg.src, now)
        if msg.term > MAX_TERM:
            return
        if msg.term - self._term > self.config.max_term_jump:
            self._step_toward(msg, now)
            return
        if msg.term > self._term and not self._accept_higher_term(msg, now):
            return
        if msg.term < self._term:
            self._answer_stale(msg)
            return
        handler = _HANDLERS[type(msg)]
        handler(self, msg, now)

    def _before_finish(self) -> None:
        saved = self._saved
        if self._log_dirty or self._term != saved.term or self._voted_for != saved.voted_for:
            self._saved = self._out.persist = RaftPersistentState(self._term, self._voted_for, tuple(self._log))
            self._log_dirty = False

    # --- terms ---------------------------------------------------------------

    def _accept_higher_term(self, msg: RaftMessage, now: float) -> bool:
        """Decide what a message from a higher term does to us; False means drop it."""
        if isinstance(msg, RaftRequestVote):
            if not msg.transfer and self._in_lease(now):
                return False  # stickiness: a fresh leader exists, ignore the disruptor
            if msg.pre_vote:
                return True  # a pre-vote never changes our term
        if isinstance(msg, RaftVote) and msg.pre_vote and msg.granted:
            return True  # a granted pre-vote echoes the proposed term, not the voter's
        leader = msg.src if isinstance(msg, RaftAppendEntries) else None
        self._become_follower(msg.term, leader, now)
        return True

    def _step_toward(self, msg: RaftMessage, now: float) -> None:
        """A term too far ahead: move up by max_term_jump at most, and only for a message whose
        term is the sender's own (a pre-vote proposes a term, TimeoutNow commands one)."""
        if isinstance(msg, RaftTimeoutNow) or (isinstance(msg, RaftVote) and msg.pre_vote and msg.granted):
            return
        if isinstance(msg, RaftRequestVote) and (msg.pre_vote or self._in_lease(now)):
            return
        self._become_follower(min(self._term + self.config.max_term_jump, MAX_TERM), None, now)

    def _answer_stale(self, msg: RaftMessage) -> None:
        # A stale leader must learn the newer term or it would never step down;
        # a stale pre-candidate learns it is behind.
        if isinstance(msg, RaftAppendEntries):
            self._send_to(msg.src, RaftAppendResult, term=self._term, success=False, match_index=0)
        elif isinstance(msg, RaftRequestVote) and msg.pre_vote:
            self._send_to(msg.src, RaftVote, term=self._term, granted=False, pre_vote=True)

    def _in_lease(self, now: float) -> bool:
        if not self.config.check_quorum:
            return False
        if self._role == "leader":
            return True
        return self._leader is not None and now - self._leader_contact < self._t

    def _become_follower(self, term: int, leader: str | None, now: float) -> None:
        if term > self._term:
            self._term = term
            self._voted_for = None
        self._role = "follower"
        self._leader = leader
        self._learners.clear()
        if leader is not None:
            self._leader_contact = now
        self._reset_timer(now)

    def _reset_timer(self, now: float) -> None:
        self._deadline = now + self._t * (1 + self._rng.random())

    # --- campaigning ---------------------------------------------------------

    def _campaign(self, now: float, pre: bool, transfer: bool = False) -> None:
        if self._term >= MAX_TERM or not self._may_campaign():
            self._reset_timer(now)
            return  # no term left to run in (see "Absurd terms"), or not a voter
        self._leader = None
        self._votes = {self.node_id}
        self._reset_timer(now)
        if pre:
            self._role = "pre_candidate"
            proposed = self._term + 1
        else:
            self._role = "candidate"
            self._term += 1
            self._voted_for = self.node_id
            proposed = self._term
        if self._count_votes(now):
            return
        last_term, last_index = self._last_log()
        for peer in self._config:
            if peer != self.node_id:
                self._send_to(peer, RaftRequestVote, term=proposed, last_log_index=last_index,
                              last_log_term=last_term, pre_vote=pre, transfer=transfer)

    def _may_campaign(self) -> bool:
        """Voters campaign; so does a server whose latest configuration drops it while that
        entry is not known to be committed: its log may be the only complete one, and without
        it nobody could be elected. It counts no vote of its own and steps down once the entry
        commits."""
        return self.node_id in self._config or (bool(self._config) and self._config_index > self._commit)

    def _count_votes(self, now: float) -> bool:
        """Advance if the votes gathered so far form a majority of our configuration."""
        if len(self._votes & self._config.keys()) < self._quorum():
            return False
        if self._role == "pre_candidate":
            self._campaign(now, pre=False)
        else:
            self._become_leader(now)
        return True

    def _become_leader(self, now: float) -> None:
        self._role = "leader"
        self._leader = self.node_id
        last = len(self._log)
        for peer in self._targets():
            # Everyone gets a full T to answer before CheckQuorum may count them out.
            self._heard[peer] = max(self._heard.get(peer, now), now)
            self._next_index[peer] = last + 1
            self._match_index[peer] = 0
        self._farewell_sent_for = 0
        # Committing an entry of our own term tells us what is committed, and it must happen
        # before we change the configuration (or a change of an earlier term could be lost).
        self._append(NOOP)
        self._advance_commit(now)
        self._broadcast_heartbeat(now)

    def _on_request_vote(self, msg: RaftRequestVote, now: float) -> None:
        log_ok = (msg.last_log_term, msg.last_log_index) >= self._last_log()
        if msg.pre_vote:
            granted = log_ok and msg.term > self._term and not self._in_lease(now)
            term = msg.term if granted else self._term
            self._send_to(msg.src, RaftVote, term=term, granted=granted, pre_vote=True)
            return
        can_vote = self._voted_for == msg.src or (self._voted_for is None and self._leader is None)
        granted = can_vote and log_ok
        if granted:
            self._voted_for = msg.src
            self._reset_timer(now)
        self._send_to(msg.src, RaftVote, term=self._term, granted=granted, pre_vote=False)

    def _on_vote(self, msg: RaftVote, now: float) -> None:
        wanted_role = "pre_candidate" if msg.pre_vote else "candidate"
        wanted_term = self._term + 1 if msg.pre_vote else self._term
        if self._role == wanted_role and msg.term == wanted_term and msg.granted:
            self._votes.add(msg.src)
            self._count_votes(now)

    # --- leading -------------------------------------------------------------

    def _targets(self) -> list[str]:
        """Whom the leader replicates to: voters, learners, and servers whose removal is not yet
        committed (they must hear of it, or they would wait for a leader forever). Sorted:
        the order of sends must not depend on string hashing, or a seed would not replay."""
        targets = set(self._config) | set(self._learners)
        if self._config_index > self._commit:
            targets |= self._previous.keys()
        targets.discard(self.node_id)
        return sorted(targets)

    def _broadcast_heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.config.heartbeat_interval_s
        for peer in self._targets():
            self._send_append(peer)

    def _send_append(self, peer: str) -> None:
        last = len(self._log)
        next_index = min(self._next_index.setdefault(peer, last + 1), last + 1)
        prev = next_index - 1
        entries = tuple(self._log[prev:prev + MAX_BATCH])
        self._send_to(peer, RaftAppendEntries, term=self._term, prev_log_index=prev,
                      prev_log_term=self._term_at(prev), entries=entries, leader_commit=self._commit)

    def _check_quorum(self, now: float) -> None:
        for peer in self._targets():
            if self._alive.get(peer, True) and now - self._heard.get(peer, float("-inf")) >= self._t:
                self._alive[peer] = False
                self._emit(MemberSuspect(peer))
        if not self.config.check_quorum:
            return
        reached = sum(1 for p in self._config if p == self.node_id or self._alive.get(p, False))
        if reached < self._quorum():
            self._role = "follower"
            self._leader = None
            self._learners.clear()
            self._reset_timer(now)

    def _on_append_entries(self, msg: RaftAppendEntries, now: float) -> None:
        if self._role == "leader":
            return  # same term, two leaders: impossible unless persistence was skipped
        self._become_follower(msg.term, msg.src, now)
        prev = msg.prev_log_index
        if prev > len(self._log) or self._term_at(prev) != msg.prev_log_term:
            hint = len(self._log) if prev > len(self._log) else prev - 1
            self._send_to(msg.src, RaftAppendResult, term=self._term, success=False, match_index=max(0, hint))
            return
        if not self._take_entries(prev, msg.entries, msg.term):
            return  # not what a leader sends (or it contradicts what is committed): ignore it
        last_new = prev + len(msg.entries)
        if msg.leader_commit > self._commit:
            self._set_commit(min(msg.leader_commit, last_new))
        self._send_to(msg.src, RaftAppendResult, term=self._term, success=True, match_index=last_new)

    def _take_entries(self, prev: int, entries: tuple[RaftEntry, ...], term: int) -> bool:
        """Append `entries` after index `prev`, cutting off whatever they contradict."""
        for offset, entry in enumerate(entries):
            index = prev + offset + 1
            if entry.index != index or entry.term > term:
                return False
            if index <= len(self._log) and self._log[index - 1].term != entry.term and index <= self._commit:
                return False
        changed = False
        for entry in entries:
            if entry.index <= len(self._log):
                if self._log[entry.index - 1].term == entry.term:
                    continue
                del self._log[entry.index - 1:]
            self._log.append(entry)
            changed = True
        if changed:
            self._log_dirty = True
            self._reload_configuration()
        return True

    def _on_append_result(self, msg: RaftAppendResult, now: float) -> None:
        peer = msg.src
        if self._role != "leader" or peer not in self._targets():
            return
        last = len(self._log)
        if msg.success:
            if msg.match_index > last:
                return  # acknowledges entries we never sent
            self._match_index[peer] = max(self._match_index.get(peer, 0), msg.match_index)
            self._next_index[peer] = self._match_index[peer] + 1
            self._advance_commit(now)
            if self._role != "leader":
                return
            if peer in self._learners and self._match_index[peer] >= len(self._log):
                self._promote(peer, now)
            if self._next_index.get(peer, last + 1) <= len(self._log):
                self._send_append(peer)
        else:
            current = self._next_index.get(peer, last + 1)
            self._next_index[peer] = max(1, min(current - 1, msg.match_index + 1))
            self._send_append(peer)

    def _advance_commit(self, now: float) -> None:
        voters = self._config
        for index in range(len(self._log), self._commit, -1):
            if self._log[index - 1].term != self._term:
                break  # entries of earlier terms commit only under one of ours
            count = sum(1 for v in voters if v == self.node_id or self._match_index.get(v, 0) >= index)
            if count >= self._quorum():
                self._set_commit(index)
                break
        if self._config_index <= self._commit and self._farewell_sent_for < self._config_index:
            # Tell the servers this configuration removed that it is committed, once.
            self._farewell_sent_for = self._config_index
            for peer in sorted(self._previous.keys() - self._config.keys() - {self.node_id}):
                self._send_append(peer)
        if self.node_id not in self._config and self._config_index <= self._commit:
            # Removed, and the removal is committed: step down and hand over at once.
            successor = self._successor(now)
            if successor is not None:
                self._send_to(successor, RaftTimeoutNow, term=self._term)
            self._role = "follower"
            self._leader = None
            self._learners.clear()
            self._reset_timer(now)

    def _successor(self, now: float) -> str | None:
        fresh = [p for p in self._config if p != self.node_id and now - self._heard.get(p, float("-inf")) < self._t]
        if not fresh:
            return None
        # "Most up to date" is the highest match index; recency and rank only break ties.
        return max(fresh, key=lambda p: (self._match_index.get(p, 0), self._heard[p], rank_key(0, p)))

    def _on_timeout_now(self, msg: RaftTimeoutNow, now: float) -> None:
        if self._role != "leader":
            self._campaign(now, pre=False, transfer=True)

    # --- membership changes --------------------------------------------------

    def _on_change_request(self, msg: RaftChangeRequest, now: float) -> None:
        if msg.action not in CHANGE_ACTIONS:
            return
        if self._role == "leader":
            self._propose(msg.action, msg.target, msg.target_address, now)
        elif self._leader is not None and self._leader != msg.src and self._leader in self._addresses:
            self._send_to(self._leader, RaftChangeRequest, term=self._term, action=msg.action,
                          target=msg.target, target_address=msg.target_address)

    def _propose(self, action: str, target: str, address: str, now: float) -> None:
        """Start one change if none is under way; otherwise the requester asks again later."""
        if self._config_index > self._commit or self._term_at(self._commit) != self._term:
            return
        if action == "add":
            if target in self._config or target in self._learners or not self._can_carry(target, now):
                return
            self._addresses[target] = address
            self._learners[target] = now
            self._next_index[target] = len(self._log) + 1
            self._match_index[target] = 0
            self._heard[target] = now
            self._send_append(target)
        elif target in self._config and len(self._config) > 1 and self._can_carry(target, now, removing=True):
            self._append(configuration_data({k: v for k, v in self._config.items() if k != target}))
            self._advance_commit(now)
            self._broadcast_heartbeat(now)

    def _can_carry(self, target: str, now: float, removing: bool = False) -> bool:
        """Whether the configuration after this change has a majority that answers now.

        Removing a live member while another is down (or adding one while half are down)
        would leave a configuration that cannot commit anything, this change included: refuse
        it, and let the requester ask again once enough members are back.
        """
        after = set(self._config) - {target} if removing else set(self._config) | {target}
        fresh = sum(1 for p in after if p == self.node_id or p == target and not removing
                    or now - self._heard.get(p, float("-inf")) < self._t)
        return fresh >= len(after) // 2 + 1

    def _promote(self, learner: str, now: float) -> None:
        if self._config_index > self._commit or not self._can_carry(learner, now):
            return  # the previous change first (or a majority back); the learner's next ack tries again
        del self._learners[learner]
        self._append(configuration_data({**self._config, learner: self._addresses[learner]}))
        self._advance_commit(now)
        self._broadcast_heartbeat(now)

    def _drop_slow_learners(self, now: float) -> None:
        for learner, since in list(self._learners.items()):
            if now - since >= LEARNER_PATIENCE * self._t:
                del self._learners[learner]

    def _send_requests(self, now: float) -> None:
        """Ask for admission while joining, and push queued removals to the leader."""
        self._next_request = now + self._t
        if self.joining:
            contacts = [("", seed) for seed in self.config.seeds]
            if self._leader is not None and self._leader in self._addresses:
                contacts.append((self._leader, self._addresses[self._leader]))
            for node_id, address in contacts:
                self._send(RaftChangeRequest(src=self.node_id, dst=node_id, src_address=self.config.address,
                                             dst_address=address, term=self._term, action="add",
                                             target=self.node_id, target_address=self.config.address))
        for target in sorted(self._removals):
            if target not in self._config:
                self._removals.discard(target)
            elif self._role == "leader":
                self._propose("remove", target, self._config[target], now)
            elif self._leader is not None and self._leader in self._addresses:
                self._send_to(self._leader, RaftChangeRequest, term=self._term, action="remove",
                              target=target, target_address=self._config[target])

    # --- the log -------------------------------------------------------------

    def _append(self, data: str) -> None:
        self._log.append(RaftEntry(term=self._term, index=len(self._log) + 1, data=data))
        self._log_dirty = True
        self._reload_configuration()

    def _set_commit(self, index: int) -> None:
        self._commit = index
        if not self._admitted and self.node_id in self._config and self._config_index <= index:
            self._admitted = True

    def _reload_configuration(self) -> None:
        """Take the latest configuration in the log (the first one when there is none)."""
        found: list[tuple[int, dict[str, str]]] = []
        for entry in reversed(self._log):
            members = configuration_of(entry)
            if members is not None:
                found.append((entry.index, members))
                if len(found) == 2:
                    break
        old = self._config
        self._config_index, self._config = found[0] if found else (0, dict(self._first))
        self._previous = found[1][1] if len(found) > 1 else (dict(self._first) if found else {})
        self._addresses.update(self._previous)
        self._addresses.update(self._config)
        for peer in self._config.keys() - old.keys() - {self.node_id}:
            self._learners.pop(peer, None)
            self._heard.setdefault(peer, self._now)
            self._next_index.setdefault(peer, len(self._log) + 1)
            self._match_index.setdefault(peer, 0)

    def _term_at(self, index: int) -> int:
        return self._log[index - 1].term if 0 < index <= len(self._log) else 0

    def _last_log(self) -> tuple[int, int]:
        """(term, index) of the last log entry."""
        return (self._log[-1].term, len(self._log)) if self._log else (0, 0)

    def _quorum(self) -> int:
        return len(self._config) // 2 + 1

    # --- plumbing ------------------------------------------------------------

    def _note_contact(self, peer: str, now: float) -> None:
        self._heard[peer] = now
        if not self._alive.get(peer, False):
            was_known = peer in self._alive
            self._alive[peer] = True
            if was_known or peer in self._config:
                self._emit(MemberUp(peer, self._addresses[peer]))

    def _send_to(self, peer: str, cls: type, **fields: Any) -> None:
        self._send(cls(src=self.node_id, dst=peer, src_address=self.config.address,
                       dst_address=self._addresses[peer], **fields))


_HANDLERS: dict[type, Callable[[Raft, Any, float], None]] = {
    RaftRequestVote: Raft._on_request_vote,
    RaftVote: Raft._on_vote,
    RaftAppendEntries: Raft._on_append_entries,
    RaftAppendResult: Raft._on_append_result,
    RaftTimeoutNow: Raft._on_timeout_now,
}
