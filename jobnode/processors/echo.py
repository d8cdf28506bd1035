"""The `echo` built-in: a job's result is its own payload."""

from __future__ import annotations

from typing import Any

from jobnode.core.job import Job


class EchoProcessor:
    """`echo`: returns the job's payload as its result (smoke tests, plumbing checks)."""

    type = "echo"
    payload_schema: dict[str, Any] = {"type": "object"}

    async def process(self, job: Job) -> Any:
        return job.payload
