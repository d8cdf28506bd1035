"""Loads jobnode's Lua scripts, each with the shared library prepended, for redis-py."""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

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


@cache
def script_source(name: str) -> str:
    lua = resources.files("jobnode.storage.redis") / "lua"
    return (lua / "lib.lua").read_text() + "\n" + (lua / f"{name}.lua").read_text()


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
