"""Housekeeping only the leader does, once an interval: the reconciler and the retention sweep.

A store that is down makes a round fail with Unavailable; that is logged and the next round
tries again, so a duty never ends while the node runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from jobnode.cluster.leadership import Leadership
from jobnode.core.errors import Unavailable

log = structlog.get_logger(__name__)


async def every_interval_while_leader(leadership: Leadership, interval_s: float,
                                      duty: Callable[[], Awaitable[object]], *, name: str) -> None:
    """Run `duty` every `interval_s` while this node leads; `name` prefixes its log events."""
    while True:
        await asyncio.sleep(interval_s)
        if not leadership.is_leader:
            continue
        try:
            await duty()
        except Unavailable as exc:
            log.warning(f"{name}.unavailable", error=str(exc))
