"""Validation of a submitted job: what a client may send, and the JobSpec it becomes."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from jobnode.core.errors import ValidationError
from jobnode.core.job import DEFAULT_PRIORITY, DURABILITIES, QUEUE, JobSpec
from jobnode.core.queues import QUEUE_NAME_RULE, is_queue_name

PRIORITY_NAMES = {"low": 1, "normal": 5, "high": 10}
MIN_PRIORITY, MAX_PRIORITY = 0, 10
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
    "queue",
    "durability",
)


@dataclass(frozen=True)
class JobDefaults:
    """Per-node defaults a submission falls back on."""

    max_retries: int = 3
    timeout_s: float = 300.0


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
        queue=_parse_queue(body.get("queue"), f + "queue"),
        durability=_parse_durability(body.get("durability"), f + "durability", key),
    )


def _parse_durability(value: Any, name: str, idempotency_key: Any) -> str | None:
    if value is None:
        return None
    if value not in DURABILITIES:
        raise ValidationError(name, f"must be one of {', '.join(DURABILITIES)}")
    if value == QUEUE and idempotency_key is not None:
        # The store's unique index is what refuses a second job with the same key, so a job
        # acknowledged before the store holds it could not be checked against it.
        raise ValidationError(name, "'queue' cannot be combined with an idempotency key: the key is checked "
                                    "by the store, which a 'queue' submission does not wait for")
    return value


def _parse_queue(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not is_queue_name(value):
        raise ValidationError(name, f"must be a queue name: {QUEUE_NAME_RULE}")
    return value


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
