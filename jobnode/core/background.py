"""Background loops: keep them running through unexpected errors, and stop them for sure."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)

RESTART_PAUSE_S = 1.0


def supervise(name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
    """Run a background loop forever; an unexpected crash is logged and the loop restarted."""

    async def guarded() -> None:
        while True:
            try:
                await run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task.crashed", task=name)
                await asyncio.sleep(RESTART_PAUSE_S)

    return asyncio.create_task(guarded(), name=name)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they are really gone.

    A library that swallows one CancelledError (it happens inside drivers' timeout code)
    would otherwise leave a loop running forever, so cancel again until each one ends.
    """
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
        if pending:
            log.warning("shutdown.task_ignored_cancel", tasks=sorted(t.get_name() for t in pending))
