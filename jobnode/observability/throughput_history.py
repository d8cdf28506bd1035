"""An hour of throughput: completions per second, one point per step, for charts.

Fed the same cluster-wide completion counter as `Throughput`, by the same background
sampler, so every node holds its own copy of the same curve without asking Prometheus.
A point is written once at least `step_s` has passed since the last one, whatever the
sampling interval, so the history holds at most window_s / step_s points (360 by default).
Pure: the caller passes the wall-clock time.
"""

from __future__ import annotations

from collections import deque

HISTORY_WINDOW_S = 3600.0
HISTORY_STEP_S = 10.0


class ThroughputHistory:
    """[epoch_s, completed_per_s] points for the last `window_s`, oldest first."""

    def __init__(self, window_s: float = HISTORY_WINDOW_S, step_s: float = HISTORY_STEP_S) -> None:
        self.window_s = window_s
        self.step_s = step_s
        self._points: deque[tuple[float, float]] = deque()
        self._last: tuple[float, int] | None = None  # the sample the next point's rate starts from

    def observe(self, now_epoch_s: float, total: int) -> None:
        last = self._last
        if last is not None and total < last[1]:
            self._last = (now_epoch_s, total)  # the counter went back: no rate spans that
            return
        if last is None or now_epoch_s < last[0]:
            self._last = (now_epoch_s, total)
            return
        elapsed_s = now_epoch_s - last[0]
        if elapsed_s < self.step_s:
            return
        self._points.append((now_epoch_s, (total - last[1]) / elapsed_s))
        self._last = (now_epoch_s, total)
        while self._points and now_epoch_s - self._points[0][0] > self.window_s:
            self._points.popleft()

    def points(self) -> list[list[float]]:
        return [[round(at_s, 3), round(rate, 3)] for at_s, rate in self._points]
