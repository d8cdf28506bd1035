"""Throughput from a counter sampled over time: jobs completed per second, recently.

The counter is the cluster's (Redis counts every completion, whichever node ran it), and
every node samples it in the background, so each node reports the same cluster-wide rate
whether or not anyone asked it before.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

from jobnode.core.errors import Unavailable
from jobnode.observability.throughput_history import ThroughputHistory

log = structlog.get_logger(__name__)

WINDOW_S = 60.0
SAMPLE_INTERVAL_S = 5.0


class Throughput:
    """Keeps (time, total) samples for the last minute and derives a rate from them."""

    def __init__(self, window_s: float = WINDOW_S, history: ThroughputHistory | None = None) -> None:
        self.window_s = window_s
        # The hour-long curve the console draws; fed only by the background sampler (run).
        self.history = history or ThroughputHistory()
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, now_s: float, total: int) -> None:
        if self._samples and total < self._samples[-1][1]:
            # The counter went back (a Redis without its data): rates across that are meaningless.
            self._samples.clear()
        self._samples.append((now_s, total))
        while len(self._samples) > 2 and now_s - self._samples[1][0] > self.window_s:
            self._samples.popleft()

    def per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return round((n1 - n0) / (t1 - t0), 2) if t1 > t0 else None

    def span_s(self) -> float | None:
        """How much time the rate covers: up to the window, less on a node just started."""
        if len(self._samples) < 2:
            return None
        return round(self._samples[-1][0] - self._samples[0][0], 1)

    async def run(self, read_total: Callable[[], Awaitable[int]],
                  interval_s: float = SAMPLE_INTERVAL_S) -> None:
        """Sample `read_total` every `interval_s` until cancelled; a sample Redis cannot give is skipped."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                total = await read_total()
                self.observe(loop.time(), total)
                self.history.observe(time.time(), total)
            except Unavailable as exc:
                log.debug("throughput.sample_skipped", error=str(exc))
            await asyncio.sleep(interval_s)
