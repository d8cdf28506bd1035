"""Background loops: keep them running through unexpected errors, and stop them for sure."""

from __future__ import annotations

import asyncio
import random
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


class Backoff:
    """How long to wait before the next try of something that keeps failing (a server that is down).

    Doubles from `base_s` up to `max_s`, each wait drawn between half and all of that ceiling,
    so that the nodes of a cluster that lost a server at the same moment do not all come back
    to it at the same moment either. `reset()` after a success.
    """

    def __init__(self, base_s: float = 0.2, max_s: float = 5.0, rng: random.Random | None = None) -> None:
        self.base_s, self.max_s = base_s, max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_s(self) -> float:
        ceiling = min(self.max_s, self.base_s * 2 ** min(self.failures, 32))
        self.failures += 1
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.failures = 0
