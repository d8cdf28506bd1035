"""What the report of a test that timed out adds: the test loop's tasks and the servers' health.

All tests share one event loop (pyproject: loop scope "session"), so when a test hangs the
questions are which await never returned, whether tasks left over from earlier tests were
busy in the same loop, and whether the shared Redis or SecantusDB had stopped answering.
pytest-timeout prints the threads' stacks only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import redis

PROBE_TIMEOUT_S = 2.0

MAX_TASKS = 60


def await_chain(coro: Any) -> Iterator[str]:
    """The frames of a suspended coroutine, outermost first, down the chain of awaits."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            return
        yield f"    {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def describe_tasks(loop: asyncio.AbstractEventLoop) -> str:
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    lines = [f"{len(tasks)} unfinished tasks in the test loop"]
    for task in tasks[:MAX_TASKS]:
        lines.append(f"- {task.get_name()}:")
        lines.extend(await_chain(task.get_coro()))
    if len(tasks) > MAX_TASKS:
        lines.append(f"... and {len(tasks) - MAX_TASKS} more")
    return "\n".join(lines)


def _ping_redis(url: str) -> None:
    with redis.Redis.from_url(url, socket_timeout=PROBE_TIMEOUT_S, socket_connect_timeout=PROBE_TIMEOUT_S) as client:
        client.ping()


def _ping_mongodb(url: str) -> None:
    timeout_ms = int(PROBE_TIMEOUT_S * 1000)
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=timeout_ms, socketTimeoutMS=timeout_ms) as client:
        client.admin.command("ping")


def probe_servers(redis_url: str | None, mongo_url: str | None) -> str:
    """How long a fresh client of each shared server took to get an answer to a ping."""
    probes: list[tuple[str, Callable[[str], None], str | None]] = [
        ("redis", _ping_redis, redis_url), ("mongodb", _ping_mongodb, mongo_url)]
    lines = []
    for name, ping, url in probes:
        if not url:
            continue
        started = time.monotonic()
        try:
            ping(url)
            lines.append(f"{name}: ping answered in {(time.monotonic() - started) * 1000:.0f} ms")
        except Exception as exc:  # the report must come out whatever the server does
            lines.append(f"{name}: no answer after {(time.monotonic() - started) * 1000:.0f} ms: {exc!r}")
    return "\n".join(lines) or "no shared server in this test"
