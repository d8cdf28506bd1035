"""Reading a built-in processor's payload.

Every check answers a bad value with a PermanentError whose `field` names the offending key
("payload.url"): no retry can fix a payload, so the job fails at once instead of being retried
into the dead-letter set.
"""

from __future__ import annotations

import math
from typing import Any

from jobnode.core.job import Job
from jobnode.processors.registry import PermanentError

REQUIRED = object()
"""The default of a field that must be given."""


def payload_object(job: Job) -> dict[str, Any]:
    if not isinstance(job.payload, dict):
        raise invalid_field("payload", "must be a JSON object")
    return job.payload


def invalid_field(name: str, reason: str) -> PermanentError:
    """The error for a bad payload field: "payload.url: must be ..." with `field` set."""
    return PermanentError(f"{name}: {reason}", field=name)


def reject_unknown_fields(payload: dict[str, Any], allowed: tuple[str, ...]) -> None:
    # Strict on purpose: a misspelt key ("header") would otherwise be ignored without a word.
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise invalid_field(f"payload.{unknown[0]}", f"unknown field; allowed: {', '.join(allowed)}")


def number_field(payload: dict[str, Any], key: str, low: float, high: float, default: Any = REQUIRED) -> float:
    name = f"payload.{key}"
    value = payload.get(key, default)
    if value is REQUIRED:
        raise invalid_field(name, f"is required (a number from {low:g} to {high:g})")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise invalid_field(name, f"must be a number from {low:g} to {high:g}, got {value!r}")
    if not low <= value <= high:
        raise invalid_field(name, f"must be from {low:g} to {high:g}, got {value!r}")
    return float(value)


def flag_field(payload: dict[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if not isinstance(value, bool):
        raise invalid_field(f"payload.{key}", f"must be true or false, got {value!r}")
    return value
