"""The `sleep` built-in: waits, then succeeds or fails as the payload asks (tests, load generation)."""

from __future__ import annotations

import asyncio
from typing import Any

from jobnode.core.job import Job
from jobnode.processors.payload import flag_field, number_field, payload_object
from jobnode.processors.registry import PermanentError, RetryableError


# Shorter waits (most load tests) report nothing: their events would only add load.
PROGRESS_FROM_S = 1.0
PROGRESS_STEPS = 10


class SleepProcessor:
    """`sleep`: waits `payload.seconds` (0..3600), for tests and load generation.

    Optional switches, checked after the wait, to exercise the failure paths:
    - `fail: true` raises a RetryableError, so the job goes through its retries;
    - `fail_permanently: true` raises a PermanentError, so it fails at once (dead-letter tests).
    Result: `{"slept_seconds": seconds}`.
    A wait of a second or more reports its progress at every tenth of it.
    """

    type = "sleep"
    max_seconds = 3600.0
    payload_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "seconds": {"type": "number", "minimum": 0, "maximum": max_seconds},
            "fail": {"type": "boolean"},
            "fail_permanently": {"type": "boolean"},
        },
        "required": ["seconds"],
        "additionalProperties": False,
    }

    async def process(self, job: Job) -> Any:
        payload = payload_object(job)
        seconds = number_field(payload, "seconds", 0, self.max_seconds)
        fail, fail_permanently = flag_field(payload, "fail"), flag_field(payload, "fail_permanently")
        if seconds >= PROGRESS_FROM_S:
            for step in range(1, PROGRESS_STEPS):  # the completion reports the last tenth
                await asyncio.sleep(seconds / PROGRESS_STEPS)
                await job.progress(step / PROGRESS_STEPS, f"slept {seconds * step / PROGRESS_STEPS:g}s of {seconds:g}s")
            await asyncio.sleep(seconds / PROGRESS_STEPS)
        else:
            await asyncio.sleep(seconds)
        if fail_permanently:
            raise PermanentError("sleep: failed permanently as asked (payload.fail_permanently)")
        if fail:
            raise RetryableError("sleep: failed as asked (payload.fail)")
        return {"slept_seconds": seconds}
