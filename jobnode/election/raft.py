"""Raft leader election: a majority vote per term, with PreVote, CheckQuorum and transfer.

How it works
------------
Time is cut into numbered terms. A follower that hears nothing from a leader
for a randomized timeout in [T, 2T) first runs a pre-vote: it asks the others
whether they *would* vote for it in the next term, without changing any term.
Only with a majority of yeses does it bump its term, vote for itself and ask
for real votes; a majority of votes in that term makes it leader. Each node
grants at most one vote per term and refuses candidates whose log is behind
its own (the log is empty for now; the checks are in place for replication).
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
- Membership is the static `peers` list; nodes cannot join at runtime.
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
- peers: every other voting member, node_id to address; the cluster is exactly these plus this
  node.
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

from collections.abc import Callable, Mapping
from typing import Any

from .base import Machine, Member, MemberSuspect, MemberUp, RaftPersistentState, rank_key
from .config import RaftConfig
from .messages import RaftAppendEntries, RaftAppendResult, RaftMessage, RaftRequestVote, RaftTimeoutNow, RaftVote

# The highest term a node adopts: far below the codec's 2**63 (and exact in any JSON reader), so
# that term + 1, which every election needs, is always a term the other nodes can decode.
MAX_TERM = 2**53


class Raft(Machine):
    """One Raft node's election state machine."""

    def __init__(self, config: RaftConfig, rng: Any, persisted: RaftPersistentState | None = None) -> None:
        super().__init__(config)
        self._rng = rng
        self._t = config.election_timeout_s
        saved = persisted or RaftPersistentState()
        self._term = saved.term
        self._voted_for = saved.voted_for
        self._saved = saved
        self._peers = dict(config.peers)
        self._quorum = (len(self._peers) + 1) // 2 + 1
        self._votes: set[str] = set()
        self._deadline = float("inf")
        self._leader_contact = float("-inf")
        self._heard: dict[str, float] = {}
        self._alive = {p: True for p in self._peers}
        self._match_index = {p: 0 for p in self._peers}
        self._next_heartbeat = 0.0

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def members(self) -> Mapping[str, Member]:
        view = {self.node_id: Member(self.node_id, self.config.address, "alive", self.config.priority)}
        for peer, address in self._peers.items():
            view[peer] = Member(peer, address, "alive" if self._alive[peer] else "suspect")
        return view

    # --- entry points --------------------------------------------------------

    def _start(self, now: float) -> None:
        self._emit(MemberUp(self.node_id, self.config.address))
        self._reset_timer(now)

    def _tick(self, now: float) -> None:
        if self._role == "leader":
            self._check_quorum(now)
        if self._role == "leader":
            if now >= self._next_heartbeat:
                self._broadcast_heartbeat(now)
        elif now >= self._deadline:
            self._campaign(now, pre=self.config.pre_vote)

    def _leave(self, now: float) -> None:
        if self._role != "leader":
            return
        fresh = [p for p in self._peers if now - self._heard.get(p, float("-inf")) < self._t]
        if fresh:
            # "Most up to date" is the highest match index; recency and rank only break ties.
            best = max(fresh, key=lambda p: (self._match_index[p], self._heard[p], rank_key(0, p)))
            self._send_to(best, RaftTimeoutNow, term=self._term)

    def _handle(self, msg: Any, now: float) -> None:
        if not isinstance(msg, RaftMessage) or msg.src not in self._peers:
            return  # membership is static: strangers get no say in quorums
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
        if self._term != saved.term or self._voted_for != saved.voted_for:
            self._saved = self._out.persist = RaftPersistentState(self._term, self._voted_for)

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
        if leader is not None:
            self._leader_contact = now
        self._reset_timer(now)

    def _reset_timer(self, now: float) -> None:
        self._deadline = now + self._t * (1 + self._rng.random())

    # --- campaigning ---------------------------------------------------------

    def _campaign(self, now: float, pre: bool, transfer: bool = False) -> None:
        if self._term >= MAX_TERM:
            self._reset_timer(now)
            return  # no term left to run in (see "Absurd terms")
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
        for peer in self._peers:
            last_term, last_index = self._last_log()
            self._send_to(peer, RaftRequestVote, term=proposed, last_log_index=last_index,
                          last_log_term=last_term, pre_vote=pre, transfer=transfer)

    def _count_votes(self, now: float) -> bool:
        """Advance if the votes gathered so far form a majority."""
        if len(self._votes) < self._quorum:
            return False
        if self._role == "pre_candidate":
            self._campaign(now, pre=False)
        else:
            self._become_leader(now)
        return True

    def _become_leader(self, now: float) -> None:
        self._role = "leader"
        self._leader = self.node_id
        # Everyone gets a full T to answer before CheckQuorum may count them out.
        for peer in self._peers:
            self._heard[peer] = max(self._heard.get(peer, now), now)
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

    def _broadcast_heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.config.heartbeat_interval_s
        for peer in self._peers:
            self._send_to(peer, RaftAppendEntries, term=self._term, prev_log_index=0,
                          prev_log_term=0, entries=(), leader_commit=0)

    def _check_quorum(self, now: float) -> None:
        for peer in self._peers:
            if self._alive[peer] and now - self._heard.get(peer, float("-inf")) >= self._t:
                self._alive[peer] = False
                self._emit(MemberSuspect(peer))
        if not self.config.check_quorum:
            return
        if 1 + sum(self._alive.values()) < self._quorum:
            self._role = "follower"
            self._leader = None
            self._reset_timer(now)

    def _on_append_entries(self, msg: RaftAppendEntries, now: float) -> None:
        if self._role == "leader":
            return  # same term, two leaders: impossible unless persistence was skipped
        self._become_follower(msg.term, msg.src, now)
        # Replication will check prev_log_index/term here; with an empty log it always matches.
        self._send_to(msg.src, RaftAppendResult, term=self._term, success=True, match_index=0)

    def _on_append_result(self, msg: RaftAppendResult, now: float) -> None:
        if self._role == "leader" and msg.success:
            self._match_index[msg.src] = max(self._match_index[msg.src], msg.match_index)

    def _on_timeout_now(self, msg: RaftTimeoutNow, now: float) -> None:
        if self._role != "leader":
            self._campaign(now, pre=False, transfer=True)

    # --- plumbing ------------------------------------------------------------

    def _last_log(self) -> tuple[int, int]:
        """(term, index) of the last log entry; the log stays empty until replication."""
        return (0, 0)

    def _note_contact(self, peer: str, now: float) -> None:
        self._heard[peer] = now
        if not self._alive[peer]:
            self._alive[peer] = True
            self._emit(MemberUp(peer, self._peers[peer]))

    def _send_to(self, peer: str, cls: type, **fields: Any) -> None:
        self._send(cls(src=self.node_id, dst=peer, src_address=self.config.address,
                       dst_address=self._peers[peer], **fields))


_HANDLERS: dict[type, Callable[[Raft, Any, float], None]] = {
    RaftRequestVote: Raft._on_request_vote,
    RaftVote: Raft._on_vote,
    RaftAppendEntries: Raft._on_append_entries,
    RaftAppendResult: Raft._on_append_result,
    RaftTimeoutNow: Raft._on_timeout_now,
}
