"""Loads jobnode's Lua scripts for redis-py: each is a generated prelude, lib.lua, then its own file.

The prelude declares, as Lua lists, the groups of job hash fields the scripts handle by
name (jobnode.core.record), so no Lua file spells a field list of its own:
  SNAPSHOT     the fields each state change sends through the outbox (lib.lua's emit)
  TAKE_FIELDS  the fields a worker gets when it starts a job, in the order take_next
               returns them and Python decodes them
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
)


def _lua_list(names: Sequence[str]) -> str:
    if not all(name.isidentifier() for name in names):  # each is pasted into Lua source
        raise ValueError(f"job field names must be identifiers: {names}")
    return "{" + ", ".join(f"'{name}'" for name in names) + "}"


@cache
def lua_prelude() -> str:
    return (
        "-- Generated from jobnode/core/record.py (see jobnode/storage/redis/scripts.py).\n"
        f"local SNAPSHOT = {_lua_list(group_names(SNAPSHOT))}\n"
        f"local TAKE_FIELDS = {_lua_list(group_names(TAKEN))}\n"
    )


@cache
def script_source(name: str) -> str:
    lua = resources.files("jobnode.storage.redis") / "lua"
    return "\n".join((lua_prelude(), (lua / "lib.lua").read_text(), (lua / f"{name}.lua").read_text()))


class Scripts:
    """The scripts registered on one Redis client (EVALSHA, reloaded after a Redis restart)."""

    def __init__(self, redis: Redis) -> None:
        for name in SCRIPT_NAMES:
            setattr(self, name, redis.register_script(script_source(name)))

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
