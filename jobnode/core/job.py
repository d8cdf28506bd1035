"""The job: its states, its record, and the validation of a submission."""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from jobnode.core.errors import ValidationError

PENDING = "pending"
ASSIGNED = "assigned"
RUNNING = "running"
RETRYING = "retrying"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

STATUSES = (PENDING, ASSIGNED, RUNNING, RETRYING, COMPLETED, FAILED, CANCELLED)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

PRIORITY_NAMES = {"low": 1, "normal": 5, "high": 10}
MIN_PRIORITY, MAX_PRIORITY, DEFAULT_PRIORITY = 0, 10, 5
MAX_RETRIES_LIMIT = 100
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_IDEMPOTENCY_KEY_LEN = 200
MAX_TYPE_LEN = 100
# MongoDB refuses documents nested deeper than 100 levels, and deep nesting costs recursion
# wherever a job is copied or encoded; a payload gets well under that.
MAX_PAYLOAD_DEPTH = 64
MIN_INT64, MAX_INT64 = -(2**63), 2**63 - 1  # what BSON can store
MIN_SCHEDULED_YEAR, MAX_SCHEDULED_YEAR = 1970, 9999
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"

SUBMIT_FIELDS = (
    "type",
    "priority",
    "payload",
    "max_retries",
    "timeout_seconds",
    "scheduled_at",
    "idempotency_key",
)


def new_job_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    # Millisecond precision: that is what BSON dates keep, so a job read back equals the one written.
    now = datetime.now(timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def from_epoch_ms(ms: int | float | None) -> datetime | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)


def to_epoch_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def isoformat(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    if dt.tzinfo is None:  # pymongo hands back naive UTC datetimes unless tz_aware is set
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobDefaults:
    """Per-node defaults a submission falls back on."""

    max_retries: int = 3
    timeout_s: float = 300.0


@dataclass(frozen=True)
class JobSpec:
    """A validated submission: what the client asked for, before the server adds its fields."""

    type: str
    priority: int = DEFAULT_PRIORITY
    payload: dict[str, Any] = field(default_factory=dict)
    max_retries: int = 3
    timeout_s: float = 300.0
    scheduled_at: datetime | None = None
    idempotency_key: str | None = None


@dataclass
class Job:
    """A job's full record, as MongoDB keeps it and the API shows it."""

    id: str
    type: str
    priority: int
    payload: dict[str, Any]
    status: str
    max_retries: int
    timeout_s: float
    created_at: datetime
    updated_at: datetime
    attempts: int = 0
    scheduled_at: datetime | None = None
    idempotency_key: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    node_id: str | None = None
    worker_id: str | None = None
    result: Any = None
    error: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    submitted_by: str | None = None
    request_id: str | None = None  # of the API request that submitted it; worker log lines carry it
    # Bumped by every state change; MongoDB applies an update only if it carries a higher rev,
    # which makes replayed or reordered status writes harmless.
    rev: int = 0

    @classmethod
    def new(cls, spec: JobSpec, *, submitted_by: str | None = None, request_id: str | None = None,
            now: datetime | None = None) -> Job:
        now = now or utcnow()
        return cls(
            id=new_job_id(),
            type=spec.type,
            priority=spec.priority,
            payload=spec.payload,
            status=PENDING,
            max_retries=spec.max_retries,
            timeout_s=spec.timeout_s,
            created_at=now,
            updated_at=now,
            scheduled_at=spec.scheduled_at,
            idempotency_key=spec.idempotency_key,
            submitted_by=submitted_by,
            request_id=request_id,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def to_document(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["_id"] = doc.pop("id")
        doc["timeout_seconds"] = doc.pop("timeout_s")
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Job:
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in doc.items() if k in names}
        data["id"] = doc["_id"]
        data["timeout_s"] = doc.get("timeout_seconds", 0.0)
        for key in ("created_at", "updated_at", "started_at", "finished_at", "scheduled_at"):
            value = data.get(key)
            if isinstance(value, datetime) and value.tzinfo is None:
                data[key] = value.replace(tzinfo=timezone.utc)
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The API's view: ISO-8601 times, `id` at the top level, no internal fields."""
        return {
            "id": self.id,
            "type": self.type,
            "status": self.status,
            "priority": self.priority,
            "payload": self.payload,
            "attempts": self.attempts,
            "max_retries": self.max_retries,
            "timeout_seconds": self.timeout_s,
            "scheduled_at": isoformat(self.scheduled_at),
            "idempotency_key": self.idempotency_key,
            "created_at": isoformat(self.created_at),
            "updated_at": isoformat(self.updated_at),
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "node_id": self.node_id,
            "worker_id": self.worker_id,
            "result": self.result,
            "error": self.error,
            "errors": self.errors,
            "submitted_by": self.submitted_by,
            "request_id": self.request_id,
        }


def parse_submission(
    body: Any,
    *,
    known_types: Collection[str],
    defaults: JobDefaults,
    idempotency_key: str | None = None,
    field_prefix: str = "",
) -> JobSpec:
    """Validate one submitted job; raises ValidationError naming the first bad field."""
    if not isinstance(body, dict):
        raise ValidationError(field_prefix.rstrip(".") or "body", "a job must be a JSON object")
    unknown = sorted(set(body) - set(SUBMIT_FIELDS))
    if unknown:
        raise ValidationError(
            field_prefix + unknown[0],
            f"unknown field {unknown[0]!r}",
            details={"unknown_fields": unknown, "allowed_fields": list(SUBMIT_FIELDS)},
        )
    f = field_prefix
    if "idempotency_key" in body:
        key, key_name = body["idempotency_key"], f + "idempotency_key"
    else:
        key, key_name = idempotency_key, IDEMPOTENCY_KEY_HEADER
    return JobSpec(
        type=_parse_type(body.get("type"), known_types, f + "type"),
        priority=parse_priority(body.get("priority", DEFAULT_PRIORITY), f + "priority"),
        payload=_parse_payload(body.get("payload", {}), f + "payload"),
        max_retries=_parse_int(
            body.get("max_retries", defaults.max_retries), f + "max_retries", 0, MAX_RETRIES_LIMIT
        ),
        timeout_s=_parse_timeout(body.get("timeout_seconds", defaults.timeout_s), f + "timeout_seconds"),
        scheduled_at=parse_datetime(body.get("scheduled_at"), f + "scheduled_at"),
        idempotency_key=_parse_idempotency_key(key, key_name),
    )


def _parse_type(value: Any, known_types: Collection[str], name: str) -> str:
    if value is None:
        raise ValidationError(name, "is required", details={"registered_types": sorted(known_types)})
    if not isinstance(value, str) or not value or len(value) > MAX_TYPE_LEN:
        raise ValidationError(name, f"must be a non-empty string of at most {MAX_TYPE_LEN} characters")
    if value not in known_types:
        raise ValidationError(
            name,
            f"unknown job type {value!r}; registered types: {', '.join(sorted(known_types))}",
            details={"registered_types": sorted(known_types)},
        )
    return value


def parse_priority(value: Any, name: str = "priority") -> int:
    """Accept 0–10 or the names low/normal/high."""
    if isinstance(value, str):
        named = PRIORITY_NAMES.get(value.strip().lower())
        if named is None:
            raise ValidationError(name, f"must be an integer 0-10 or one of {', '.join(PRIORITY_NAMES)}")
        return named
    return _parse_int(value, name, MIN_PRIORITY, MAX_PRIORITY)


def _parse_int(value: Any, name: str, low: int, high: int) -> int:
    # bool is an int subclass in Python; `true` is never a meaningful count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(name, f"must be an integer from {low} to {high}")
    if not low <= value <= high:
        raise ValidationError(name, f"must be from {low} to {high}, got {value}")
    return value


def _parse_timeout(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(name, "must be a finite number of seconds")
    if not 0 < value <= MAX_TIMEOUT_S:
        raise ValidationError(name, f"must be more than 0 and at most {int(MAX_TIMEOUT_S)} seconds")
    return float(value)


def _parse_payload(value: Any, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(name, "must be a JSON object")
    _check_storable(value, name, root=name, depth=1)
    return value


def _check_storable(value: Any, name: str, *, root: str, depth: int) -> None:
    """Refuse what JSON allows but MongoDB cannot store, so it is a 400 and not a failed write."""
    if isinstance(value, (dict, list)) and depth > MAX_PAYLOAD_DEPTH:
        raise ValidationError(root, f"is nested too deep: at most {MAX_PAYLOAD_DEPTH} levels of objects and arrays")
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                raise ValidationError(name, f"has a key containing a NUL character: {key[:64]!r}")
            _check_storable(item, f"{name}.{key}", root=root, depth=depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{name}[{index}]", root=root, depth=depth + 1)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int) and not MIN_INT64 <= value <= MAX_INT64:
        raise ValidationError(name, "is an integer outside the signed 64-bit range; send it as a string")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(name, "must be a finite number")


def parse_datetime(value: Any, name: str) -> datetime | None:
    """Parse an ISO-8601 time; one without a zone is taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(name, "must be an ISO-8601 date-time string, e.g. 2026-01-31T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValidationError(
            name, f"{value[:64]!r} is not an ISO-8601 date-time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    span = f"must be between the years {MIN_SCHEDULED_YEAR} and {MAX_SCHEDULED_YEAR} in UTC"
    try:
        in_utc = parsed.astimezone(timezone.utc)
    except OverflowError:  # e.g. 9999-12-31T23:00:00-12:00 is past the end of datetime's range
        raise ValidationError(name, span) from None
    if not MIN_SCHEDULED_YEAR <= in_utc.year <= MAX_SCHEDULED_YEAR:
        raise ValidationError(name, span)
    return in_utc


def _parse_idempotency_key(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_IDEMPOTENCY_KEY_LEN:
        raise ValidationError(name, f"must be a non-empty string of at most {MAX_IDEMPOTENCY_KEY_LEN} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a header with bytes that are not UTF-8 arrives with surrogates in it
        raise ValidationError(name, "must be valid UTF-8 text") from None
    return value
