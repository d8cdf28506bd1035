"""How commands print: JSON, padded tables, and progress on stderr."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def print_json(value: Any, args: argparse.Namespace) -> None:
    """One line with --json (for machines), indented otherwise (for people)."""
    print(json.dumps(value) if args.json else json.dumps(value, indent=2))


# The fields people look at first; any others follow in name order.
JOB_FIELDS_FIRST = ("id", "type", "status", "priority", "attempts", "max_retries", "created_at", "scheduled_at",
                    "started_at", "completed_at", "worker_id", "error", "payload", "result")


def format_job(job: dict[str, Any]) -> str:
    """One job as `name  value` lines, for people; --json prints the object itself instead."""
    names = [name for name in JOB_FIELDS_FIRST if name in job]
    names += sorted(name for name in job if name not in JOB_FIELDS_FIRST)
    width = max((len(name) for name in names), default=0)
    return "\n".join(f"{name.ljust(width)}  {cell_text(job[name])}" for name in names)


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; number columns right-aligned, missing values as `-`."""
    rows = [list(row) for row in rows]
    cells = [[cell_text(value) for value in row] for row in rows]
    widths = [max([len(header)] + [len(row[i]) for row in cells]) for i, header in enumerate(headers)]
    right = [bool(rows) and all(_is_number(row[i]) or row[i] is None for row in rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)]
        return "  ".join(padded).rstrip()

    return "\n".join([line([header.upper() for header in headers])] + [line(row) for row in cells])


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def cell_text(value: Any) -> str:
    """A value as a table cell shows it: `-` for missing, compact floats, JSON for structures."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


class Progress:
    """Progress of a long command on stderr: a redrawn bar on a terminal, a line per tenth otherwise."""

    BAR_WIDTH = 30
    REDRAW_INTERVAL_S = 0.1

    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._tenths_shown = -1

    def update(self, done: int) -> None:
        if self.tty:
            now = time.monotonic()
            if done >= self.total or now - self._drawn_at >= self.REDRAW_INTERVAL_S:
                self._drawn_at = now
                self.stream.write("\r" + self._bar(done, now))
                self.stream.flush()
            return
        tenths = done * 10 // max(self.total, 1)
        if tenths > self._tenths_shown:  # a log file gets a handful of lines, not a flood
            self._tenths_shown = tenths
            print(f"{self.label}: {done}/{self.total} ({done * 100 // max(self.total, 1)}%)", file=self.stream)

    def _bar(self, done: int, now: float) -> str:
        filled = self.BAR_WIDTH * done // max(self.total, 1)
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {done}/{self.total} {done * 100 // max(self.total, 1):3d}% {rate:,.0f}/s"

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
