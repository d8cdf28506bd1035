"""Per-algorithm settings, checked when built so a bad value fails at start.

Every check raises ValueError naming the field, the value and what is allowed,
so the daemon can pass the message straight to the operator. Derived defaults
(None meaning "computed from the other timers") are filled in after checking.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

_MAX_TEXT = 256
_MAX_ADDRESS = 2048


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"{name}={value!r} is invalid: {allowed}")


def _check_text(name: str, value: Any, limit: int = _MAX_TEXT) -> None:
    if type(value) is not str or not value or len(value) > limit:
        _fail(name, value, f"must be a non-empty string of at most {limit} characters")


def _check_seconds(name: str, value: Any) -> None:
    if type(value) not in (int, float) or not math.isfinite(value) or value <= 0:
        _fail(name, value, "must be a positive number of seconds")


def _check_count(name: str, value: Any, minimum: int) -> None:
    if type(value) is not int or value < minimum:
        _fail(name, value, f"must be an int >= {minimum}")


def _set(config: Any, name: str, value: Any) -> None:
    # Frozen dataclasses still need their derived defaults filled in once.
    object.__setattr__(config, name, value)


@dataclass(frozen=True, kw_only=True)
class _Common:
    """Fields every algorithm takes; see each subclass for timer meanings."""

    node_id: str
    address: str
    priority: int = 0
    peers: Mapping[str, str] = field(default_factory=dict)
    election_timeout_s: float = 1.0
    heartbeat_interval_s: float = 0.25

    def __post_init__(self) -> None:
        _check_text("node_id", self.node_id)
        _check_text("address", self.address, _MAX_ADDRESS)
        if type(self.priority) is not int:
            _fail("priority", self.priority, "must be an int")
        if not isinstance(self.peers, Mapping):
            _fail("peers", self.peers, "must be a mapping of node_id to address")
        for peer_id, peer_address in self.peers.items():
            _check_text(f"peers[{peer_id!r}]", peer_id)
            _check_text(f"peers[{peer_id!r}]", peer_address, _MAX_ADDRESS)
        # Operators often hand every node the same PEERS list: drop ourselves.
        own = {k: v for k, v in self.peers.items() if k != self.node_id}
        _set(self, "peers", own)
        _check_seconds("election_timeout_s", self.election_timeout_s)
        _check_seconds("heartbeat_interval_s", self.heartbeat_interval_s)
        if self.heartbeat_interval_s >= self.election_timeout_s:
            _fail("heartbeat_interval_s", self.heartbeat_interval_s,
                  f"must be below election_timeout_s ({self.election_timeout_s})")

    @property
    def tick_interval_s(self) -> float:
        """How often the daemon should call `on_tick`: timers fire at most this late."""
        return min(0.05, max(0.005, self._shortest_timer_s() / 2))

    def _shortest_timer_s(self) -> float:
        return self.heartbeat_interval_s


def _check_seeds(config: Any) -> None:
    if not isinstance(config.seeds, (tuple, list)):
        _fail("seeds", config.seeds, "must be a list of addresses")
    for seed in config.seeds:
        _check_text("seeds[]", seed, _MAX_ADDRESS)
    _set(config, "seeds", tuple(s for s in config.seeds if s != config.address))


@dataclass(frozen=True, kw_only=True)
class BullyConfig(_Common):
    """Bully settings; `seeds` are addresses to announce ourselves to at start."""

    election_timeout_s: float = 1.0
    heartbeat_interval_s: float = 0.25
    answer_timeout_s: float | None = None
    seeds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        answer = self.answer_timeout_s
        if answer is None:
            answer = min(self.heartbeat_interval_s, self.election_timeout_s / 4)
            _set(self, "answer_timeout_s", answer)
        _check_seconds("answer_timeout_s", answer)
        if answer >= self.election_timeout_s:
            _fail("answer_timeout_s", answer, f"must be below election_timeout_s ({self.election_timeout_s})")
        _check_seeds(self)

    def _shortest_timer_s(self) -> float:
        return min(self.heartbeat_interval_s, cast(float, self.answer_timeout_s))


@dataclass(frozen=True, kw_only=True)
class RaftConfig(_Common):
    """Raft settings. The first configuration is `peers` plus this node; with no peers but
    `seeds`, the node starts outside any configuration and asks the seeds to add it (unless
    `found`); with neither it founds a cluster of one. Configuration entries in the log override all three."""

    election_timeout_s: float = 0.3
    heartbeat_interval_s: float = 0.05
    pre_vote: bool = True
    check_quorum: bool = True
    max_term_jump: int = 10_000
    seeds: tuple[str, ...] = ()
    found: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_seeds(self)
        if type(self.found) is not bool:
            _fail("found", self.found, "must be true or false")
        _check_count("max_term_jump", self.max_term_jump, 1)
        if type(self.pre_vote) is not bool:
            _fail("pre_vote", self.pre_vote, "must be true or false")
        if type(self.check_quorum) is not bool:
            _fail("check_quorum", self.check_quorum, "must be true or false")

    def _shortest_timer_s(self) -> float:
        # Ticks also quantize the randomized election timeouts: at heartbeat/2 (15 ms with a
        # 150 ms timeout) the two survivors of a leader's crash often woke on the same tick
        # and split the vote, which costs a second round. A tenth of the timeout keeps their
        # deadlines apart, so a split vote after a leader's crash becomes rare.
        return min(self.heartbeat_interval_s, self.election_timeout_s / 10)


@dataclass(frozen=True, kw_only=True)
class GossipConfig(_Common):
    """SWIM settings: `heartbeat_interval_s` is the protocol period, `election_timeout_s`
    the suspicion timeout; `seeds` are addresses to join through."""

    election_timeout_s: float = 1.0
    heartbeat_interval_s: float = 0.2
    ping_timeout_s: float | None = None
    ping_req_fanout: int = 3
    sync_interval_s: float | None = None
    retransmit_mult: int = 3
    max_piggyback: int = 8
    seeds: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        ping_timeout = self.ping_timeout_s
        if ping_timeout is None:
            ping_timeout = self.heartbeat_interval_s / 2
            _set(self, "ping_timeout_s", ping_timeout)
        _check_seconds("ping_timeout_s", ping_timeout)
        if ping_timeout >= self.heartbeat_interval_s:
            _fail("ping_timeout_s", ping_timeout, f"must be below heartbeat_interval_s ({self.heartbeat_interval_s})")
        if self.sync_interval_s is None:
            _set(self, "sync_interval_s", 10 * self.heartbeat_interval_s)
        _check_seconds("sync_interval_s", self.sync_interval_s)
        _check_count("ping_req_fanout", self.ping_req_fanout, 0)
        _check_count("retransmit_mult", self.retransmit_mult, 1)
        _check_count("max_piggyback", self.max_piggyback, 1)
        _check_seeds(self)

    def _shortest_timer_s(self) -> float:
        return cast(float, self.ping_timeout_s)


CONFIG_CLASSES = {"bully": BullyConfig, "raft": RaftConfig, "gossip": GossipConfig}


def field_names(config_class: type) -> list[str]:
    """The settings a config class accepts, in declaration order."""
    return [f.name for f in fields(config_class)]
