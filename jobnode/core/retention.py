"""How long MongoDB keeps a finished job: per final status, overridable per job type.

A finished job's record gets `expire_at` (its finish time plus the retention that applies)
when its final state is written, and the leader's retention sweep (jobnode.pipeline.retention)
deletes it after that time, at most RETENTION_SWEEP_INTERVAL late. 0 keeps the job forever:
it gets no `expire_at`.

The defaults: completed and cancelled jobs 7 days (long enough to look into last week's
runs; the counts of them are kept apart, see jobnode.storage.mongo.counts), failed
(dead-lettered) jobs 30 days, a month for someone to look at them and retry them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from jobnode.core.job import CANCELLED, COMPLETED, FAILED

DAY_S = 86400.0
FINISHED = (COMPLETED, FAILED, CANCELLED)
DEFAULT_RETENTION_S = {COMPLETED: 7 * DAY_S, FAILED: 30 * DAY_S, CANCELLED: 7 * DAY_S}
MAX_RETENTION_S = 100 * 365 * DAY_S


def parse_pairs(text: str, parse_duration_s: object, *, keys: tuple[str, ...] | None, what: str) -> dict[str, float]:
    """`name=duration,...` into {name: seconds}; `keys` limits the names (None: any)."""
    found: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"{item!r} is not {what}=duration")
        if keys is not None and name not in keys:
            raise ValueError(f"{name!r} is not one of {', '.join(keys)}")
        if name in found:
            raise ValueError(f"{name!r} is given twice")
        value = value.strip()
        # Days too (`7d`): retention is counted in them; anything else is a duration as elsewhere.
        if re.fullmatch(r"\d{1,6}(\.\d+)?d", value):
            seconds = float(value[:-1]) * DAY_S
        else:
            seconds = parse_duration_s(value)  # type: ignore[operator]
        if not 0 <= seconds <= MAX_RETENTION_S:
            raise ValueError(f"the retention of {name!r} must be from 0 (keep forever) to 100 years")
        found[name] = float(seconds)
    return found


def retention_s(status: str, job_type: str, by_status: Mapping[str, float], by_type: Mapping[str, float]) -> float:
    """Seconds a finished job of this status and type is kept (0: forever)."""
    if job_type in by_type:
        return by_type[job_type]
    return by_status.get(status, DEFAULT_RETENTION_S.get(status, 0.0))


def expire_at(finished_at: datetime, status: str, job_type: str, by_status: Mapping[str, float],
              by_type: Mapping[str, float]) -> datetime | None:
    seconds = retention_s(status, job_type, by_status, by_type)
    return finished_at + timedelta(seconds=seconds) if seconds > 0 else None
