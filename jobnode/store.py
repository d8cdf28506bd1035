"""The MongoDB store: the durable record of jobs (and, later, nodes, elections and metrics).

Indexes are paid on every insert (on the embedded SecantusDB one secondary index roughly
halves insert throughput), so `jobs` has only those a query needs:
  status_created   {status, created_at desc}: list by status newest first, stats counts,
                   and the reconciler's scan of unfinished jobs.
  type_created     {type, created_at desc}: list by type newest first.
  created          {created_at desc}: list everything newest first (the default view).
  idempotency_key  unique, partial (only jobs that carry a key, so unkeyed submits skip
                   it): the database itself refuses a second job with the same key.
  submitter_created {submitted_by, created_at desc}, partial (only jobs with a submitter,
                   so with auth off inserts skip it): a user's own jobs, newest first.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

import orjson
from pymongo import ASCENDING, DESCENDING, IndexModel, UpdateOne, WriteConcern
from pymongo import errors as mongo_errors
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.errors import Unavailable, ValidationError
from jobnode.jobs import STATUSES, TERMINAL, Job, from_epoch_ms

P = ParamSpec("P")
R = TypeVar("R")

DUPLICATE_KEY = 11000

JOB_INDEXES = [
    IndexModel([("status", ASCENDING), ("created_at", DESCENDING)], name="status_created"),
    IndexModel([("type", ASCENDING), ("created_at", DESCENDING)], name="type_created"),
    IndexModel([("created_at", DESCENDING)], name="created"),
    IndexModel(
        [("idempotency_key", ASCENDING)],
        name="idempotency_key",
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    ),
    IndexModel(
        [("submitted_by", ASCENDING), ("created_at", DESCENDING)],
        name="submitter_created",
        partialFilterExpression={"submitted_by": {"$type": "string"}},
    ),
]


def mongo_boundary(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Turn MongoDB driver errors that mean "cannot reach it" into Unavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (mongo_errors.ConnectionFailure, mongo_errors.ExecutionTimeout) as exc:
            raise Unavailable(f"mongodb is unreachable: {exc}") from exc

    return wrapper


@dataclass(frozen=True)
class Snapshot:
    """A job's mutable fields as of one state change, on their way to MongoDB."""

    id: str
    rev: int
    fields: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.fields.get("status") in TERMINAL


class DuplicateIdempotencyKey(Exception):
    """Another job already carries this idempotency key."""


class JobStore:
    """Reads and writes job records; every write that changes state is guarded by rev."""

    def __init__(self, db: AsyncDatabase) -> None:
        self.db = db
        # Journaled writes: an acknowledged write survives a kill -9 of the database server
        # (without j, SecantusDB and mongod can lose the last ~100 ms of writes).
        self.jobs = db.get_collection("jobs", write_concern=WriteConcern(w=1, j=True))

    @mongo_boundary
    async def ensure_indexes(self) -> None:
        await self.jobs.create_indexes(JOB_INDEXES)

    @mongo_boundary
    async def insert_many(self, jobs: Sequence[Job]) -> list[Exception | None]:
        """Insert jobs in one round trip; per job, None or the exception that refused it."""
        outcome: list[Exception | None] = [None] * len(jobs)
        try:
            await self.jobs.insert_many([job.to_document() for job in jobs], ordered=False)
        except mongo_errors.BulkWriteError as exc:
            for err in exc.details.get("writeErrors", []):
                index = err["index"]
                if err.get("code") == DUPLICATE_KEY and jobs[index].idempotency_key:
                    outcome[index] = DuplicateIdempotencyKey(jobs[index].idempotency_key)
                else:
                    outcome[index] = RuntimeError(err.get("errmsg", "insert refused"))
        return outcome

    @mongo_boundary
    async def get(self, job_id: str) -> Job | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return Job.from_document(doc) if doc else None

    @mongo_boundary
    async def get_by_idempotency_key(self, key: str) -> Job | None:
        doc = await self.jobs.find_one({"idempotency_key": key})
        return Job.from_document(doc) if doc else None

    @mongo_boundary
    async def list(
        self, *, status: str | None, type_: str | None, limit: int, cursor: str | None,
        submitted_by: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first; the cursor is opaque to clients (created_at and id of the last)."""
        query: dict[str, Any] = {}
        if submitted_by is not None:
            query["submitted_by"] = submitted_by
        if status:
            query["status"] = status
        if type_:
            query["type"] = type_
        if cursor:
            created_at, last_id = decode_cursor(cursor)
            query["$or"] = [
                {"created_at": {"$lt": created_at}},
                {"created_at": created_at, "_id": {"$lt": last_id}},
            ]
        found = self.jobs.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit + 1)
        jobs = [Job.from_document(doc) async for doc in found]
        next_cursor = encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
        return jobs[:limit], next_cursor

    @mongo_boundary
    async def apply(self, snapshots: Sequence[Snapshot]) -> int:
        """Write state changes, each only if it is newer than what MongoDB holds (never upsert)."""
        if not snapshots:
            return 0
        ops = [
            UpdateOne({"_id": s.id, "rev": {"$lt": s.rev}}, {"$set": {**s.fields, "rev": s.rev}})
            for s in snapshots
        ]
        result = await self.jobs.bulk_write(ops, ordered=False)
        return result.modified_count

    @mongo_boundary
    async def delete(self, job_id: str) -> bool:
        return (await self.jobs.delete_one({"_id": job_id})).deleted_count == 1

    @mongo_boundary
    async def delete_unqueued(self, job_ids: Sequence[str]) -> None:
        """Take back inserts whose enqueue failed, unless something already moved them on."""
        await self.jobs.delete_many({"_id": {"$in": list(job_ids)}, "rev": 0, "status": "pending"})

    @mongo_boundary
    async def count_by_status(self) -> dict[str, int]:
        counts = {}
        for status in STATUSES:
            counts[status] = await self.jobs.count_documents({"status": status})
        return counts

    @mongo_boundary
    async def unfinished(self, *, updated_before: datetime, after_id: str | None, limit: int) -> list[Job]:
        """Unfinished jobs not touched since `updated_before`, in id order for paging."""
        query: dict[str, Any] = {
            "status": {"$in": [s for s in STATUSES if s not in TERMINAL]},
            "updated_at": {"$lt": updated_before},
        }
        if after_id:
            query["_id"] = {"$gt": after_id}
        found = self.jobs.find(query).sort("_id", ASCENDING).limit(limit)
        return [Job.from_document(doc) async for doc in found]


def encode_cursor(job: Job) -> str:
    raw = orjson.dumps([int(job.created_at.timestamp() * 1000), job.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_ms, job_id = orjson.loads(raw)
        if type(created_ms) is not int or not isinstance(job_id, str):
            raise ValueError("bad cursor shape")
        return from_epoch_ms(created_ms), job_id  # type: ignore[return-value]
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValidationError("cursor", "is not a cursor this server issued") from None
