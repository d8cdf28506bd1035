"""The contract every election algorithm shares: rank order, members, events, output.

An algorithm here is a state machine with no clock, no sockets and no global
randomness. The caller feeds it `start`, `on_tick`, `on_message` and `leave`
with the current time in seconds and gets an `Output` back: messages to send,
state to write to disk first (raft only) and events to record. `Machine` holds
the plumbing that makes the three algorithms behave alike at that boundary.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .messages import Message, RaftEntry

MEMBER_STATES = ("alive", "suspect", "dead", "left")

_DIGITS = re.compile(r"([0-9]+)")


@functools.lru_cache(maxsize=4096)
def rank_key(priority: int, node_id: str) -> tuple[Any, ...]:
    """Sort key for leadership: higher priority wins, then the larger node id.

    Node ids compare in natural order, so runs of digits compare as numbers and
    `node-10` outranks `node-9`. Digit runs keep their text as a tie breaker
    ("01" vs "1"), so two different ids never get the same key.
    """
    parts = _DIGITS.split(node_id)
    # split() alternates text, digits, text...: positions of the same parity
    # always hold the same kind, so the tuples always compare cleanly.
    return (priority, *((int(p), p) if i % 2 else p for i, p in enumerate(parts)))


@dataclass(frozen=True)
class Member:
    """One node as this node currently sees it."""

    node_id: str
    address: str
    state: str
    priority: int | None = None
    incarnation: int = 0


@dataclass(frozen=True)
class RaftPersistentState:
    """Raft's `currentTerm`, `votedFor` and log: written durably before sending.

    The log holds only membership: configuration entries (the full member set) and the no-op
    a new leader appends to learn what is committed.
    """

    term: int = 0
    voted_for: str | None = None
    log: tuple[RaftEntry, ...] = ()

    def __post_init__(self) -> None:
        if type(self.term) is not int or self.term < 0:
            raise ValueError(f"term must be a non-negative int, got {self.term!r}")
        if self.voted_for is not None and (type(self.voted_for) is not str or not self.voted_for):
            raise ValueError(f"voted_for must be a non-empty str or None, got {self.voted_for!r}")
        if not isinstance(self.log, tuple):
            raise ValueError(f"log must be a tuple of entries, got {type(self.log).__name__}")
        previous_term = 0
        for position, entry in enumerate(self.log, start=1):
            if not isinstance(entry, RaftEntry) or entry.index != position:
                raise ValueError(f"log[{position - 1}] must be the entry with index {position}, got {entry!r:.80}")
            if type(entry.term) is not int or not previous_term <= entry.term <= self.term:
                raise ValueError(f"log[{position - 1}].term={entry.term!r} must not decrease nor pass the term")
            if type(entry.data) is not str:
                raise ValueError(f"log[{position - 1}].data must be text")
            previous_term = entry.term

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the daemon writes to disk."""
        return {"term": self.term, "voted_for": self.voted_for,
                "log": [{"term": e.term, "index": e.index, "data": e.data} for e in self.log]}

    @classmethod
    def from_dict(cls, data: Any) -> RaftPersistentState:
        """Read back `to_dict()`; raises ValueError naming the bad field."""
        if not isinstance(data, dict):
            raise ValueError(f"raft state must be an object, got {type(data).__name__}")
        raw_log = data.get("log", [])
        if not isinstance(raw_log, list):
            raise ValueError("log must be a list")
        try:
            log = tuple(RaftEntry(term=e["term"], index=e["index"], data=e["data"]) for e in raw_log)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"log entries need term, index and data: {exc}") from None
        return cls(term=data.get("term", 0), voted_for=data.get("voted_for"), log=log)


@dataclass(frozen=True)
class LeaderChanged:
    """This node's idea of the leader changed, or the term changed while a leader is known.

    So `leader` may equal the previous leader when only the term moved (the
    same node re-elected, or a gossip leader re-claiming a fresh epoch).
    """

    leader: str | None
    term: int


@dataclass(frozen=True)
class MemberUp:
    """A member became reachable (first contact, recovery or refuted suspicion)."""

    node_id: str
    address: str


@dataclass(frozen=True)
class MemberSuspect:
    """A member stopped answering but is not yet declared dead."""

    node_id: str


@dataclass(frozen=True)
class MemberDown:
    """A member is considered dead."""

    node_id: str


@dataclass(frozen=True)
class MemberLeft:
    """A member announced a graceful departure."""

    node_id: str


Event = LeaderChanged | MemberUp | MemberSuspect | MemberDown | MemberLeft


@dataclass
class Output:
    """What one call produced. Write `persist` durably before sending `messages`."""

    messages: list[Any] = field(default_factory=list)
    persist: RaftPersistentState | None = None
    events: list[Event] = field(default_factory=list)


class Machine:
    """Plumbing shared by the algorithms: clock clamping, output and leader events.

    Subclasses implement `_start`, `_tick`, `_handle` and `_leave`, and keep
    `_leader`, `_term` and `_role` current; the public methods wrap them.
    """

    def __init__(self, config: Any) -> None:
        self.config = config
        self.node_id: str = config.node_id
        self._leader: str | None = None
        self._term = 0
        self._role = "follower"
        self._now = float("-inf")
        self._stopped = False
        self._out = Output()
        self._reported: tuple[str | None, int] = (None, 0)

    @property
    def leader(self) -> str | None:
        return self._leader

    @property
    def term(self) -> int:
        return self._term

    @property
    def role(self) -> str:
        return self._role

    @property
    def members(self) -> Mapping[str, Member]:
        raise NotImplementedError

    def start(self, now: float) -> Output:
        """Begin running; call once before anything else."""
        self._begin(now)
        self._start(self._now)
        return self._finish()

    def on_tick(self, now: float) -> Output:
        """Let timers fire; call every `config.tick_interval_s` or faster."""
        self._begin(now)
        if not self._stopped:
            self._tick(self._now)
        return self._finish()

    def on_message(self, msg: Any, now: float) -> Output:
        """Handle one decoded message; ones for another node or algorithm are ignored."""
        self._begin(now)
        if not self._stopped and isinstance(msg, Message) and msg.src != self.node_id \
                and msg.dst in (self.node_id, ""):
            self._handle(msg, self._now)
        return self._finish()

    def remove_member(self, node_id: str, now: float) -> Output:
        """An operator's word that `node_id` is gone for good: drop it from the membership.

        Raft turns this into a configuration change through its leader (retried until the
        change is in this node's log); gossip and bully stop counting the node at once and
        tell the others.
        """
        self._begin(now)
        if not self._stopped and node_id != self.node_id:
            self._remove(node_id, self._now)
        return self._finish()

    def depart(self, now: float) -> Output:
        """Start leaving the membership; call `leave` once `departed` is true (or time is up)."""
        self._begin(now)
        if not self._stopped:
            self._depart(self._now)
        return self._finish()

    @property
    def departed(self) -> bool:
        """True once the others no longer count this node (raft: a committed configuration
        without it). Gossip and bully have nothing to wait for: their `leave` tells everyone."""
        return True

    def _remove(self, node_id: str, now: float) -> None:
        raise NotImplementedError

    def _depart(self, now: float) -> None:
        """Nothing to do before `leave` for algorithms whose leave message is the departure."""

    def leave(self, now: float) -> Output:
        """Shut down gracefully; afterwards every call returns an empty Output."""
        self._begin(now)
        if not self._stopped:
            self._leave(self._now)
            self._stopped = True
            self._role = "left"
            self._leader = None
        return self._finish()

    def _begin(self, now: float) -> None:
        # A clock that steps backwards must not make timers fire twice or
        # never: time only moves forward for the machine.
        if now > self._now:
            self._now = float(now)
        self._out = Output()

    def _finish(self) -> Output:
        self._before_finish()
        leader, term = self._leader, self._term
        old_leader, old_term = self._reported
        if leader != old_leader or (leader is not None and term != old_term):
            self._out.events.append(LeaderChanged(leader, term))
        self._reported = (leader, term)
        out, self._out = self._out, Output()
        return out

    def _before_finish(self) -> None:
        """Hook run at the end of every call, before leader events are computed."""

    def _send(self, msg: Any) -> None:
        self._out.messages.append(msg)

    def _emit(self, event: Event) -> None:
        self._out.events.append(event)

    def _start(self, now: float) -> None:
        raise NotImplementedError

    def _tick(self, now: float) -> None:
        raise NotImplementedError

    def _handle(self, msg: Any, now: float) -> None:
        raise NotImplementedError

    def _leave(self, now: float) -> None:
        raise NotImplementedError
