"""The job: its states, its record as MongoDB keeps it and the API shows it, and its times."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

PENDING = "pending"
ASSIGNED = "assigned"
RUNNING = "running"
RETRYING = "retrying"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"

STATUSES = (PENDING, ASSIGNED, RUNNING, RETRYING, COMPLETED, FAILED, CANCELLED)
TERMINAL = frozenset({COMPLETED, FAILED, CANCELLED})

DEFAULT_PRIORITY = 5
# When a submission is acknowledged (docs/architecture.md, "Durability"): STORE once MongoDB
# holds it (a journaled insert), QUEUE once Redis does (its record follows through the outbox).
STORE, QUEUE = "store", "queue"
DURABILITIES = (STORE, QUEUE)
DEFAULT_QUEUE = "default"


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
class JobSpec:
    """A validated submission: what the client asked for, before the server adds its fields."""

    type: str
    priority: int = DEFAULT_PRIORITY
    payload: dict[str, Any] = field(default_factory=dict)
    max_retries: int = 3
    timeout_s: float = 300.0
    scheduled_at: datetime | None = None
    idempotency_key: str | None = None
    queue: str | None = None  # None: the type's own queue, which the service fills in
    schedule: str | None = None  # set by the scheduler only, never from a submission
    scheduled_for: datetime | None = None
    durability: str | None = None  # None: the type's, else the node's default (the catalog fills it in)


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
    queue: str = DEFAULT_QUEUE  # only workers of nodes serving this queue run the job
    # The last progress its processor reported: {"fraction", "message", "at_ms"} (None: none yet).
    last_progress: dict[str, Any] | None = None
    trace_context: str | None = None  # W3C traceparent of its submission, when tracing is on
    schedule: str | None = None  # the schedule that fired it, if one did
    scheduled_for: datetime | None = None  # the fire time it was created for (before jitter)
    durability: str = STORE  # what its acknowledgement waited for (STORE or QUEUE)
    # Bumped by every state change; MongoDB applies an update only if it carries a higher rev,
    # which makes replayed or reordered status writes harmless.
    rev: int = 0
    # Where a running job's progress and log lines go (set by the worker that runs it; a job
    # read from storage has none, and then progress() and log() only check their arguments).
    _reporter: JobReporter | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def new(cls, spec: JobSpec, *, submitted_by: str | None = None, request_id: str | None = None,
            trace_context: str | None = None, now: datetime | None = None) -> Job:
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
            queue=spec.queue or DEFAULT_QUEUE,
            trace_context=trace_context,
            schedule=spec.schedule,
            scheduled_for=spec.scheduled_for,
            durability=spec.durability or STORE,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def to_document(self) -> dict[str, Any]:
        # A shallow copy: dataclasses.asdict deep-copies the payload and result, which cost a
        # visible share of a submission's time, and nothing changes a document once built.
        doc = {name: getattr(self, name) for name in _DOCUMENT_FIELDS}
        doc["_id"] = doc.pop("id")
        doc["timeout_seconds"] = doc.pop("timeout_s")
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> Job:
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in doc.items() if k in names}
        data["id"] = doc["_id"]
        data["timeout_s"] = doc.get("timeout_seconds", 0.0)
        data.pop("_reporter", None)
        for key in ("created_at", "updated_at", "started_at", "finished_at", "scheduled_at", "scheduled_for"):
            value = data.get(key)
            if isinstance(value, datetime) and value.tzinfo is None:
                data[key] = value.replace(tzinfo=timezone.utc)
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The API's view: ISO-8601 times, `id` at the top level, no internal fields."""
        return {
            "id": self.id,
            "type": self.type,
            "queue": self.queue,
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
            "progress": self.last_progress,
            "schedule": self.schedule,
            "scheduled_for": isoformat(self.scheduled_for),
            "durability": self.durability,
        }

    def attach_reporter(self, reporter: JobReporter) -> None:
        self._reporter = reporter

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job has come (0.0 to 1.0), with an optional short message.

        Reports are throttled per job (the last one wins), stored on the job as `progress`
        and published as a `job.progress` event. Raises ValueError for a fraction outside
        0..1 or a message that is not text."""
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
            raise ValueError(f"progress fraction must be a number from 0 to 1, got {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise ValueError(f"progress message must be text, got {type(message).__name__}")
        if self._reporter is not None:
            await self._reporter.progress(float(fraction), message)

    def log(self, message: str) -> None:
        """Keep a line in the job's log (the last lines are kept; see GET /api/v1/jobs/{id}/logs).

        Safe to call from a thread the processor started."""
        if not isinstance(message, str):
            message = str(message)
        if self._reporter is not None:
            self._reporter.log(message)


class JobReporter(Protocol):
    """Where a running job's progress and log lines go (the worker pool provides one per job)."""

    async def progress(self, fraction: float, message: str | None) -> None: ...

    def log(self, message: str) -> None: ...


_DOCUMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Job) if f.name != "_reporter")
