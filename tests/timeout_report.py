"""What the report of a test that timed out adds: the test loop's tasks and the servers' health.

All tests share one event loop (pyproject: loop scope "session"), so when a test hangs the
questions are which await never returned, whether tasks left over from earlier tests were
busy in the same loop, and whether the shared Redis or SecantusDB had stopped answering.
pytest-timeout prints the threads' stacks only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from typing import Any

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


def probe_servers(servers: Mapping[str, Any]) -> str:
    """Whether each shared server (an embedded one, by name) answered a ping, and how fast."""
    lines = []
    for name, server in servers.items():
        started = time.monotonic()
        answered = server.answers()
        elapsed_ms = (time.monotonic() - started) * 1000
        lines.append(f"{name}: {'answered' if answered else 'no answer'} in {elapsed_ms:.0f} ms")
    return "\n".join(lines) or "no shared server in this test"
