"""Retry back-off: how long a failed job waits before its next attempt."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """The wait before attempt n+1: min(base * multiplier^(n-1), max) (`fixed`: base), times a
    random jitter factor within 1 ± jitter_factor, so failed jobs do not all retry at once."""

    policy: str = "exponential"
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    multiplier: float = 2.0
    jitter_factor: float = 0.1

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed attempt `attempt` (1 = the first run)."""
        if self.policy == "fixed":
            delay = self.base_delay_s
        else:
            # Cap the exponent so a huge attempt count cannot overflow the float.
            exponent = min(max(attempt - 1, 0), 64)
            delay = min(self.base_delay_s * self.multiplier**exponent, self.max_delay_s)
        jitter = (rng or random).uniform(1 - self.jitter_factor, 1 + self.jitter_factor)
        return delay * jitter
