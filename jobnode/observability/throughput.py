"""Throughput from a counter sampled over time: jobs completed per second, recently."""

from __future__ import annotations

from collections import deque

WINDOW_S = 60.0


class Throughput:
    """Keeps (time, total) samples for the last minute and derives a rate from them."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, now_s: float, total: int) -> None:
        self._samples.append((now_s, total))
        while len(self._samples) > 2 and now_s - self._samples[1][0] > self.window_s:
            self._samples.popleft()

    def per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return round((n1 - n0) / (t1 - t0), 2) if t1 > t0 else None
