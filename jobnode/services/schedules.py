"""Schedules for the API (create, read, change, pause, resume, delete) and the leader's scheduler.

The scheduler runs on every node and acts only while the node holds the leader lease. Each
round it reads the schedules, asks `due_fires` (jobnode.core.schedules) what is due, and
submits one job per fire time with the idempotency key derived from the schedule's name and
the fire time: MongoDB's unique index on that key makes a second submission of the same fire
time (a new leader repeating what the old one did just before it died, or a former leader
that has not noticed yet) return the first job instead of making another. Then it records
the fire time as handled, fenced by its lease token (jobnode.storage.mongo.schedules).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobnode.core.errors import Conflict, JobnodeError, NotFound, Unavailable, ValidationError
from jobnode.core.job import JobSpec, utcnow
from jobnode.core.schedules import (
    Schedule, due_fires, idempotency_key, jitter_s, next_fire, parse_schedule, resumed, template_submission,
)
from jobnode.core.submission import JobDefaults, parse_submission
from jobnode.cluster.leadership import Leadership
from jobnode.services.jobs import JobService
from jobnode.storage.mongo.schedules import ScheduleStore

log = structlog.get_logger(__name__)

MAX_WAIT_S = 1.0  # a new or changed schedule is seen within this
MIN_WAIT_S = 0.02
ERROR_PAUSE_S = 1.0


class ScheduleService:
    def __init__(self, store: ScheduleStore, jobs: JobService, defaults: JobDefaults) -> None:
        self.store = store
        self.jobs = jobs
        self.defaults = defaults

    async def list(self) -> list[dict[str, Any]]:
        now = utcnow()
        return [s.to_json(now) for s in await self.store.all()]

    async def get(self, name: str) -> dict[str, Any]:
        return (await self._existing(name)).to_json(utcnow())

    async def create(self, body: Any) -> dict[str, Any]:
        now = utcnow()
        schedule = parse_schedule(body, now=now)
        await self.check_template(schedule)
        await self.store.insert(schedule)
        return schedule.to_json(now)

    async def update(self, name: str, body: Any) -> dict[str, Any]:
        now = utcnow()
        current = await self._existing(name)
        schedule = parse_schedule(body, name=name, current=current, now=now)
        await self.check_template(schedule)
        return await self._write(schedule, current)

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        now = utcnow()
        current = await self._existing(name)
        if current.paused == paused:
            return current.to_json(now)
        changed = resumed(current, now) if not paused else dataclasses.replace(current, paused=True, updated_at=now)
        return await self._write(changed, current)

    async def delete(self, name: str) -> None:
        if not await self.store.delete(name):
            raise NotFound(f"no schedule named {name!r}")

    async def check_template(self, schedule: Schedule) -> JobSpec:
        """The template as the job it makes; 400 naming the field for an unknown type or queue."""
        await self.jobs.catalog.refresh()
        try:
            spec = parse_submission(template_submission(schedule), known_types=self.jobs.known_types,
                                    defaults=self.defaults, field_prefix="job.")
            [spec] = self.jobs.catalog.admit([spec], ["job."])
        except ValidationError as exc:
            if exc.field == "job.timeout_seconds":
                exc.field = "job.timeout"
            raise
        return spec

    async def _write(self, schedule: Schedule, current: Schedule) -> dict[str, Any]:
        if not await self.store.update(schedule, read_at=current.updated_at):
            raise Conflict(f"schedule {schedule.name!r} changed meanwhile; read it again and retry")
        return schedule.to_json(utcnow())

    async def _existing(self, name: str) -> Schedule:
        schedule = await self.store.get(name)
        if schedule is None:
            raise NotFound(f"no schedule named {name!r}")
        return schedule


class Scheduler:
    """Fires the schedules while this node holds the leader lease."""

    def __init__(self, schedules: ScheduleService, leadership: Leadership) -> None:
        self.schedules = schedules
        self.leadership = leadership
        self.fired = 0  # jobs created (or found created) for fire times

    async def run(self) -> None:
        while True:
            token = await self.leadership.wait_until_leader()
            try:
                wait_s = await self.tick(token, utcnow())
            except (Unavailable, Conflict) as exc:
                log.warning("scheduler.unavailable", error=str(exc))
                wait_s = ERROR_PAUSE_S
            await asyncio.sleep(wait_s)

    async def tick(self, token: int, now: datetime) -> float:
        """Fire what is due at `now`; returns how long to wait before the next round."""
        soonest = now + timedelta(seconds=MAX_WAIT_S)
        for schedule in await self.schedules.store.all():
            if schedule.paused:
                continue
            if not await self._holds_lease(token):
                return MIN_WAIT_S  # run() waits for leadership again
            await self._fire(schedule, token, now)
            soonest = min(soonest, next_fire(schedule, now))
        return min(MAX_WAIT_S, max(MIN_WAIT_S, (soonest - utcnow()).total_seconds()))

    async def _holds_lease(self, token: int) -> bool:
        holder = await self.leadership.lease.holder()
        if holder is None or holder.token != token or holder.node_id != self.leadership.lease.node_id:
            self.leadership.lost()
            return False
        return True

    async def _fire(self, schedule: Schedule, token: int, now: datetime) -> None:
        fires, handled = due_fires(schedule, now)
        if handled is None:
            return
        last_job_id = schedule.last_job_id
        job_id = None
        for fire_time in fires:
            if schedule.overlap != "allow" and await self._running(last_job_id):
                if schedule.overlap == "skip":
                    log.info("scheduler.skipped", schedule=schedule.name, fire_time=fire_time.isoformat(),
                             running=last_job_id)
                    continue
                handled = fire_time - timedelta(microseconds=1)  # "queue": this fire waits for the run to end
                break
            try:
                spec = await self.schedules.check_template(schedule)
            except JobnodeError as exc:
                log.error("scheduler.template_refused", schedule=schedule.name, error=exc.message)
                continue
            spec = dataclasses.replace(
                spec, idempotency_key=idempotency_key(schedule.name, fire_time), schedule=schedule.name,
                scheduled_for=fire_time,
                scheduled_at=fire_time + timedelta(seconds=jitter_s(schedule, fire_time)) if schedule.jitter_seconds
                else None)
            submitted = await self.schedules.jobs.submit(spec)
            job_id = last_job_id = submitted.job.id
            self.fired += 1
        if not await self.schedules.store.record_fire(schedule, handled=handled, job_id=job_id, token=token):
            log.info("scheduler.record_refused", schedule=schedule.name, note="changed meanwhile or a newer leader")

    async def _running(self, job_id: str | None) -> bool:
        if job_id is None:
            return False
        try:
            job = await self.schedules.jobs.get(job_id)
        except NotFound:
            return False
        return not job.is_terminal
