"""Running blocking code from a processor without stalling the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def run_in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking or CPU-bound `fn(*args, **kwargs)` in the default thread pool without blocking the loop.

    Two caveats a processor author should know. Cancelling the awaiting job (a timeout, a cancel)
    stops the wait but not the thread: `fn` runs to its end, so give blocking I/O its own timeout.
    Pure-Python CPU work still holds the GIL in a thread; for heavy computation submit to a
    `concurrent.futures.ProcessPoolExecutor` through `loop.run_in_executor` instead.
    """
    return await asyncio.to_thread(fn, *args, **kwargs)
