"""Waiting for a condition with a deadline: the tests' only way to synchronise."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any, Awaitable, Callable

Predicate = Callable[[], Any | Awaitable[Any]]


async def wait_until(
    predicate: Predicate,
    *,
    timeout_s: float,
    interval_s: float = 0.02,
    message: str,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll `predicate` (sync or async) until it returns a truthy value, and return that value.

    Exceptions of the types in `ignore` count as "not yet" (a node still
    starting refuses connections); any other exception propagates. On the
    deadline, raises AssertionError with `message` and the last value seen.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = predicate()
            if inspect.isawaitable(last):
                last = await last
        except ignore as error:
            last = error
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (still false after {timeout_s:g}s; last value: {last!r})")
        await asyncio.sleep(interval_s)
