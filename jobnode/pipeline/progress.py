"""Progress throttling per job: a pure state machine fed the time.

A processor may report progress as often as it likes; at most one report per job leaves per
`interval_s`, and when several arrive within one interval the last one wins (it is sent when
the interval is up, so the final value before a pause is never lost).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    fraction: float
    message: str | None = None


@dataclass
class ProgressThrottle:
    interval_s: float
    sent_at_s: float | None = None
    pending: Progress | None = None

    def offer(self, progress: Progress) -> None:
        self.pending = progress

    def due_at_s(self) -> float | None:
        """When the pending report may leave (None: nothing pending)."""
        if self.pending is None:
            return None
        return 0.0 if self.sent_at_s is None else self.sent_at_s + self.interval_s

    def take(self, now_s: float) -> Progress | None:
        """The report to send now, if one is pending and the interval is up."""
        due = self.due_at_s()
        if due is None or now_s < due:
            return None
        progress, self.pending, self.sent_at_s = self.pending, None, now_s
        return progress
