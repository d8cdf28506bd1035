"""Schedules: what one is, how a request becomes one, and which fire times are due at `now`.

Pure: no clock, no I/O. The leader's scheduler (jobnode.services.scheduler) asks
`due_fires(schedule, now)` and fires what it gets, each fire time once (the job's
idempotency key is derived from the schedule and the fire time).

Fire times:
  cron           5 fields (minute hour day month weekday) or 6 with seconds first, read in
                 the schedule's IANA time zone by croniter (maintained again since 2025, and
                 the Python cron library that has a seconds field and takes zone-aware times).
                 Across DST: a time skipped by a spring-forward change fires once, at the
                 change (croniter moves it there); a time repeated by a fall-back change
                 fires once, in its first pass, unless the expression has a wildcard hour
                 (`*` or `*/n`): those run by the clock's passing hours, so both passes fire.
  every_seconds  at the instants that are whole multiples of the interval since the Unix
                 epoch: the same on every node, whatever the time zone.
Catch-up (fire times between the last one handled and `now`):
  all   every one of them within `catch_up_window_seconds` of now, oldest first
  one   only the latest of them within the window
  none  only one that is at most LATE_TOLERANCE_S late (a tick or two of the scheduler):
        fire times passed while no leader was firing are skipped
Jitter delays a fire's job by up to `jitter_seconds`, drawn from a generator seeded with
the schedule's name and the fire time, so every node computes the same delay.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from jobnode.core.errors import ValidationError
from jobnode.core.job import isoformat

OVERLAPS = ("skip", "queue", "allow")
CATCH_UPS = ("none", "one", "all")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
NAME_RULE = "1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_EVERY_S = 366 * 86400
MAX_WINDOW_S = 366 * 86400
MAX_JITTER_S = 86400
LATE_TOLERANCE_S = 5.0
DEFAULT_WINDOW_S = 3600
MAX_FIRES_PER_CALL = 1000  # a long catch-up goes on at the next call
TEMPLATE_FIELDS = ("type", "payload", "queue", "priority", "max_retries", "timeout")
WRITABLE = ("name", "cron", "every_seconds", "timezone", "job", "overlap", "catch_up", "catch_up_window_seconds",
            "jitter_seconds", "paused")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str | None
    every_seconds: int | None
    timezone: str
    job: dict[str, Any]  # the template, as the API shows it (TEMPLATE_FIELDS)
    overlap: str = "skip"
    catch_up: str = "one"
    catch_up_window_seconds: int = DEFAULT_WINDOW_S
    jitter_seconds: float = 0
    paused: bool = False
    created_at: datetime = EPOCH
    updated_at: datetime = EPOCH
    # Fire times up to this one are handled (fired, skipped or missed); None: none yet, and
    # the schedule counts from `created_at` (or from its resume).
    last_fire_at: datetime | None = None
    last_job_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        following = next_fire(self, now) if now is not None and not self.paused else None
        return {
            "name": self.name, "cron": self.cron, "every_seconds": self.every_seconds, "timezone": self.timezone,
            "job": self.job, "overlap": self.overlap, "catch_up": self.catch_up,
            "catch_up_window_seconds": self.catch_up_window_seconds, "jitter_seconds": self.jitter_seconds,
            "paused": self.paused, "next_fire_at": isoformat(following), "last_fire_at": isoformat(self.last_fire_at),
            "last_job_id": self.last_job_id, "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
        }


# --- fire times ---


def _cron(expression: str, start: datetime) -> croniter:
    return croniter(expression, start, second_at_beginning=len(expression.split()) == 6)


def _wildcard_hour(expression: str) -> bool:
    fields = expression.split()
    hour = fields[2] if len(fields) == 6 else fields[1]
    return hour.startswith("*")


def _repeated_wall_time(moment: datetime, zone: ZoneInfo) -> bool:
    """Whether this instant is the second pass of a wall-clock time a fall-back change repeats."""
    local = moment.astimezone(zone)
    first = local.replace(tzinfo=None).replace(tzinfo=zone, fold=0)
    return first.utcoffset() != local.utcoffset()


def fire_times_after(schedule: Schedule, after: datetime) -> Any:
    """The schedule's fire times strictly after `after`, in order (UTC), without end."""
    if schedule.every_seconds:
        step = schedule.every_seconds
        k = int((after - EPOCH).total_seconds() // step) + 1
        while True:
            yield EPOCH + timedelta(seconds=k * step)
            k += 1
    assert schedule.cron is not None
    zone = ZoneInfo(schedule.timezone)
    both_passes = _wildcard_hour(schedule.cron)
    times = _cron(schedule.cron, after.astimezone(zone))
    while True:
        moment = times.get_next(datetime).astimezone(timezone.utc)
        if moment <= after:  # croniter's DST shifts can step back onto a handled time
            continue
        if not both_passes and _repeated_wall_time(moment, zone):
            continue
        yield moment


def next_fire(schedule: Schedule, now: datetime) -> datetime:
    start = max(filter(None, (schedule.last_fire_at, now)))
    return next(fire_times_after(schedule, start))


def due_fires(schedule: Schedule, now: datetime) -> tuple[list[datetime], datetime | None]:
    """The fire times to fire now, and the fire time handled up to (None: nothing changed).

    Every fire time after the last handled one and not after `now` is handled by this call:
    fired (returned) or passed over by the catch-up policy. At most MAX_FIRES_PER_CALL come
    back; the handled mark then stops at the last of them."""
    if schedule.paused:
        return [], None
    since = schedule.last_fire_at or schedule.created_at
    window_start = now - timedelta(seconds=schedule.catch_up_window_seconds)
    if schedule.catch_up == "none":
        window_start = now - timedelta(seconds=LATE_TOLERANCE_S)
    # Fire times before the window are passed over without listing them one by one.
    start = max(since, window_start - timedelta(microseconds=1)) if window_start > since else since
    due: list[datetime] = []
    handled: datetime | None = None
    skipped_before_window = start > since
    for moment in fire_times_after(schedule, start):
        if moment > now:
            break
        handled = moment
        if moment >= window_start:
            due.append(moment)
        if schedule.catch_up == "all" and len(due) >= MAX_FIRES_PER_CALL:
            break
    if schedule.catch_up in ("one", "none"):
        due = due[-1:]
    if handled is None and skipped_before_window:
        handled = start
    return due, handled


def jitter_s(schedule: Schedule, fire_time: datetime) -> float:
    if not schedule.jitter_seconds:
        return 0.0
    seed = hashlib.sha256(f"{schedule.name}\n{isoformat(fire_time)}".encode()).digest()
    return random.Random(seed).uniform(0, schedule.jitter_seconds)


def idempotency_key(schedule_name: str, fire_time: datetime) -> str:
    return f"schedule:{schedule_name}:{isoformat(fire_time)}"


# --- requests ---


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(name, f"must be an integer from {low} to {high}, got {value!r}")
    return value


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise ValidationError(name, f"must be one of {', '.join(options)}, got {value!r}")
    return value


def check_cron(value: Any) -> str:
    if not isinstance(value, str) or len(value.split()) not in (5, 6) or len(value) > 200:
        raise ValidationError("cron", "must be a cron expression of 5 fields (minute hour day month weekday) "
                                      "or 6 with seconds first")
    expression = " ".join(value.split())
    six = len(expression.split()) == 6
    try:
        valid = croniter.is_valid(expression, second_at_beginning=six)
    except Exception:  # croniter raises more than one type for text it cannot read
        valid = False
    if not valid:
        raise ValidationError("cron", f"{value!r} is not a valid cron expression")
    return expression


def check_timezone(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64 or ".." in value or value.startswith("/"):
        raise ValidationError("timezone", "must be an IANA time zone name, such as Europe/Berlin or UTC")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", f"unknown time zone {value!r}; use an IANA name such as "
                                          "Europe/Berlin or UTC") from None
    return value


def parse_schedule(body: Any, *, name: str | None = None, current: Schedule | None = None,
                   now: datetime) -> Schedule:
    """A POST body (or a PUT body for `name`, over `current`) as a Schedule; the job template's
    type and queue are checked against the cluster by the caller (services.schedules)."""
    if not isinstance(body, dict):
        raise ValidationError(None, "the body must be a JSON object describing a schedule")
    unknown = sorted(set(body) - set(WRITABLE))
    if unknown:
        raise ValidationError(unknown[0], f"unknown field {unknown[0]!r}; a schedule has {', '.join(WRITABLE)}")
    merged = {**(_writable(current) if current else {}), **body}
    if name is not None:
        if "name" in body and body["name"] != name:
            raise ValidationError("name", "cannot be changed; create a schedule under the new name")
        merged["name"] = name
    schedule_name = merged.get("name")
    if not isinstance(schedule_name, str) or not NAME.fullmatch(schedule_name):
        raise ValidationError("name", f"must be {NAME_RULE}")
    cron, every = merged.get("cron"), merged.get("every_seconds")
    if current and "cron" in body and body["cron"] is not None and "every_seconds" not in body:
        every = None
    if current and "every_seconds" in body and body["every_seconds"] is not None and "cron" not in body:
        cron = None
    if (cron is None) == (every is None):
        raise ValidationError("cron", "give exactly one of cron and every_seconds")
    cron = check_cron(cron) if cron is not None else None
    every = _int(every, "every_seconds", 1, MAX_EVERY_S) if every is not None else None
    zone = check_timezone(merged.get("timezone", "UTC"))
    template = merged.get("job")
    if not isinstance(template, dict):
        raise ValidationError("job", "must be an object: the job template {type, payload, queue, priority, "
                                     "max_retries, timeout}")
    extra = sorted(set(template) - set(TEMPLATE_FIELDS))
    if extra:
        raise ValidationError(f"job.{extra[0]}", f"unknown field; a job template has {', '.join(TEMPLATE_FIELDS)}")
    jitter = merged.get("jitter_seconds", 0)
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= MAX_JITTER_S:
        raise ValidationError("jitter_seconds", f"must be a number from 0 to {MAX_JITTER_S}")
    paused = merged.get("paused", False)
    if not isinstance(paused, bool):
        raise ValidationError("paused", "must be true or false")
    # A new timing, or a resume through PUT, counts from now: the old timing's missed times, or
    # those passed while paused, are not the schedule's to catch up.
    timing_changed = current is not None and ((cron, every, zone) != (current.cron, current.every_seconds,
                                                                      current.timezone)
                                              or (current.paused and not paused))
    return Schedule(
        name=schedule_name, cron=cron, every_seconds=every, timezone=zone, job=dict(template),
        overlap=_choice(merged.get("overlap", "skip"), "overlap", OVERLAPS),
        catch_up=_choice(merged.get("catch_up", "one"), "catch_up", CATCH_UPS),
        catch_up_window_seconds=_int(merged.get("catch_up_window_seconds", DEFAULT_WINDOW_S),
                                     "catch_up_window_seconds", 1, MAX_WINDOW_S),
        jitter_seconds=jitter, paused=paused,
        created_at=current.created_at if current else now, updated_at=now,
        # A new timing starts counting now: the old one's missed times are not the new one's.
        last_fire_at=now if timing_changed else (current.last_fire_at if current else None),
        last_job_id=current.last_job_id if current else None,
    )


def _writable(schedule: Schedule) -> dict[str, Any]:
    return {key: getattr(schedule, key) for key in WRITABLE}


def resumed(schedule: Schedule, now: datetime) -> Schedule:
    """Resuming counts from now: fire times passed while paused are not caught up."""
    return replace(schedule, paused=False, last_fire_at=now, updated_at=now)


def template_submission(schedule: Schedule) -> dict[str, Any]:
    """The template as a submission body (parse_submission's field names)."""
    body = {key: value for key, value in schedule.job.items() if key != "timeout"}
    if "timeout" in schedule.job:
        body["timeout_seconds"] = schedule.job["timeout"]
    return body
