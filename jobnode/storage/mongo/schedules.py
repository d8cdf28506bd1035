"""The schedules collection: one document per schedule, `_id` its name.

Besides the schedule's own fields a document holds `fence`, the leader lease token of the
last scheduler that recorded a fire on it: a scheduler whose token is older (a paused or
partitioned former leader) can no longer move the schedule's state. The jobs themselves
are protected by their idempotency keys (one per fire time), so the state is what a new
leader resumes from, never what decides whether a fire time has its job.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pymongo import errors as mongo_errors
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.core.errors import Conflict
from jobnode.core.schedules import Schedule
from jobnode.storage.mongo.boundary import mongo_boundary
from jobnode.storage.mongo.jobs import DUPLICATE_KEY, JOURNALED

FIELDS = ("cron", "every_seconds", "timezone", "job", "overlap", "catch_up", "catch_up_window_seconds",
          "jitter_seconds", "paused", "created_at", "updated_at", "last_fire_at", "last_job_id")


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:  # pymongo hands back naive UTC
        return value.replace(tzinfo=timezone.utc)
    return value


def to_document(schedule: Schedule) -> dict[str, Any]:
    return {"_id": schedule.name, **{name: getattr(schedule, name) for name in FIELDS}}


def from_document(doc: dict[str, Any]) -> Schedule:
    return Schedule(name=doc["_id"], **{name: _utc(doc.get(name)) for name in FIELDS})


class ScheduleStore:
    def __init__(self, db: AsyncDatabase) -> None:
        self.schedules = db.get_collection("schedules", write_concern=JOURNALED)

    @mongo_boundary
    async def all(self) -> list[Schedule]:
        return [from_document(doc) async for doc in self.schedules.find({}).sort("_id", 1)]

    @mongo_boundary
    async def get(self, name: str) -> Schedule | None:
        doc = await self.schedules.find_one({"_id": name})
        return from_document(doc) if doc else None

    @mongo_boundary
    async def insert(self, schedule: Schedule) -> None:
        try:
            await self.schedules.insert_one(to_document(schedule))
        except mongo_errors.DuplicateKeyError:
            raise Conflict(f"a schedule named {schedule.name!r} exists; PUT /api/v1/schedules/{schedule.name} "
                           "changes it") from None
        except mongo_errors.WriteError as exc:  # SecantusDB may answer a duplicate as a plain write error
            if exc.code == DUPLICATE_KEY:
                raise Conflict(f"a schedule named {schedule.name!r} exists") from None
            raise

    @mongo_boundary
    async def update(self, schedule: Schedule, *, read_at: datetime) -> bool:
        """Write a changed schedule, if nobody else changed it since it was read (`read_at`: its updated_at)."""
        fields = to_document(schedule)
        del fields["_id"]
        result = await self.schedules.update_one({"_id": schedule.name, "updated_at": read_at}, {"$set": fields})
        return result.matched_count == 1

    @mongo_boundary
    async def delete(self, name: str) -> bool:
        return (await self.schedules.delete_one({"_id": name})).deleted_count == 1

    @mongo_boundary
    async def record_fire(self, schedule: Schedule, *, handled: datetime, job_id: str | None, token: int) -> bool:
        """Move the schedule's handled mark to `handled` (and its last job), fenced by the lease
        token and refused if the schedule changed since the scheduler read it."""
        update: dict[str, Any] = {"last_fire_at": handled, "fence": token}
        if job_id is not None:
            update["last_job_id"] = job_id
        result = await self.schedules.update_one(
            {"_id": schedule.name, "updated_at": schedule.updated_at,
             "$or": [{"fence": {"$lte": token}}, {"fence": {"$exists": False}}]},
            {"$set": update})
        return result.matched_count == 1
