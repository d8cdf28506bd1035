"""Loads jobnode's Lua scripts for redis-py: each is a generated prelude, lib.lua, then its own file.

The prelude declares, as Lua lists, the groups of job hash fields the scripts handle by
name (jobnode.core.record), so no Lua file spells a field list of its own:
  SNAPSHOT     the fields each state change sends through the outbox (lib.lua's emit)
  TAKE_FIELDS  the fields a worker gets when it starts a job, in the order take_next
               returns them and Python decodes them
and EVENTS_MAX_ENTRIES, the cap of the event stream (EVENTS_MAX_ENTRIES in the settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from jobnode.core.record import SNAPSHOT, TAKEN, group_names

SCRIPT_NAMES = (
    "enqueue",
    "dispatch",
    "take",
    "finish",
    "register",
    "heartbeat",
    "reap",
    "handback",
    "cancel",
    "retry",
    "forget",
    "leader_lease",
    "progress",
)
# The event stream's cap when the caller names none (Settings.events_max_entries' default).
DEFAULT_EVENTS_MAX_ENTRIES = 100_000


def _lua_list(names: Sequence[str]) -> str:
    if not all(name.isidentifier() for name in names):  # each is pasted into Lua source
        raise ValueError(f"job field names must be identifiers: {names}")
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"


@cache
def lua_prelude(events_max_entries: int = DEFAULT_EVENTS_MAX_ENTRIES) -> str:
    return (
        "-- Generated from jobnode/core/record.py (see jobnode/storage/redis/scripts.py).\n"
        f"local SNAPSHOT = {_lua_list(group_names(SNAPSHOT))}\n"
        f"local TAKE_FIELDS = {_lua_list(group_names(TAKEN))}\n"
        f"local EVENTS_MAX_ENTRIES = {int(events_max_entries)}\n"
    )


@cache
def script_source(name: str, events_max_entries: int = DEFAULT_EVENTS_MAX_ENTRIES) -> str:
    lua = resources.files("jobnode.storage.redis") / "lua"
    return "\n".join((lua_prelude(events_max_entries), (lua / "lib.lua").read_text(),
                      (lua / f"{name}.lua").read_text()))


class Scripts:
    """The scripts registered on one Redis client (EVALSHA, reloaded after a Redis restart)."""

    def __init__(self, redis: Redis, events_max_entries: int = DEFAULT_EVENTS_MAX_ENTRIES) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, redis.register_script(script_source(name, events_max_entries)))

    enqueue: AsyncScript
    dispatch: AsyncScript
    take: AsyncScript
    finish: AsyncScript
    register: AsyncScript
    heartbeat: AsyncScript
    reap: AsyncScript
    handback: AsyncScript
    cancel: AsyncScript
    retry: AsyncScript
    forget: AsyncScript
    leader_lease: AsyncScript
    progress: AsyncScript
