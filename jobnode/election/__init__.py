"""Leader election for jobnode: Bully, Raft and Gossip as pure state machines.

Nothing here does I/O or reads a clock. The daemon builds one machine with
`create`, calls `start` once, `on_tick` every `config.tick_interval_s`,
`on_message` for each decoded message addressed to this node and `leave` on
shutdown. Each call returns an `Output`: write `persist` (raft only) durably,
then send `messages` (each knows its `dst_address`), then record `events`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from .base import (
    MEMBER_STATES,
    Event,
    LeaderChanged,
    Machine,
    Member,
    MemberDown,
    MemberLeft,
    MemberSuspect,
    MemberUp,
    Output,
    RaftPersistentState,
    rank_key,
)
from .bully import Bully
from .codec import DecodeError, decode, encode
from .config import CONFIG_CLASSES, BullyConfig, GossipConfig, RaftConfig
from .describe import describe_module
from .gossip import Gossip
from .messages import MESSAGE_TYPES, Message
from .raft import Raft

ALGORITHM_NAMES = ("bully", "raft", "gossip")

__all__ = [
    "ALGORITHM_NAMES", "MEMBER_STATES", "MESSAGE_TYPES", "Bully", "BullyConfig", "DecodeError",
    "Event", "Gossip", "GossipConfig", "LeaderChanged", "Machine", "Member", "MemberDown",
    "MemberLeft", "MemberSuspect", "MemberUp", "Message", "Output", "Raft", "RaftConfig",
    "RaftPersistentState", "create", "decode", "describe", "describe_all", "encode", "rank_key",
]


_MACHINES: dict[str, Callable[..., Machine]] = {"bully": Bully, "raft": Raft, "gossip": Gossip}


def create(name: str, config: Any, rng: random.Random,
           persisted: RaftPersistentState | None = None) -> Machine:
    """Build the election machine `name` for `config`, drawing randomness only from `rng`.

    `persisted` is raft's term and vote as last written to disk (None on first start).
    """
    if name not in ALGORITHM_NAMES:
        raise ValueError(f"unknown election algorithm {name!r}; choose one of {list(ALGORITHM_NAMES)}")
    if type(config) is not CONFIG_CLASSES[name]:
        raise TypeError(f"{name} needs a {CONFIG_CLASSES[name].__name__}, got {type(config).__name__}")
    if not isinstance(rng, random.Random):
        raise TypeError("rng must be a random.Random seeded by the caller")
    if name == "raft":
        if persisted is not None and not isinstance(persisted, RaftPersistentState):
            raise TypeError("persisted must be a RaftPersistentState or None")
        return _MACHINES[name](config, rng, persisted)
    if persisted is not None:
        raise ValueError(f"{name} keeps no persistent state; pass persisted=None")
    return _MACHINES[name](config, rng)


def describe(name: str) -> dict[str, Any]:
    """What algorithm `name` does, guarantees and risks, and what each setting means."""
    if name not in ALGORITHM_NAMES:
        raise ValueError(f"unknown election algorithm {name!r}; choose one of {list(ALGORITHM_NAMES)}")
    return describe_module(name)


def describe_all() -> dict[str, dict[str, Any]]:
    """`describe` for every algorithm, keyed by name."""
    return {name: describe(name) for name in ALGORITHM_NAMES}
