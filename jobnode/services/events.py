"""What the API may ask of the event stream: follow it (cluster-wide or one job), job logs,
and stream tokens for browsers.

Who sees what: an admin sees every event; a user sees the events of the jobs they submitted
and the cluster's node and leader events; a worker (a machine client) sees node and leader
events only, as it never sees jobs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Any

from jobnode.auth.roles import ADMIN, WORKER, Principal
from jobnode.auth.stream_tokens import StreamTokens
from jobnode.auth.tokens import IssuedToken
from jobnode.core.errors import NotFound
from jobnode.core.job import CANCELLED, COMPLETED, FAILED, Job, isoformat, to_epoch_ms
from jobnode.events.event import DEFAULT_QUEUE, Event
from jobnode.events.filters import EVERYTHING, EventFilter, Visibility, parse_filter
from jobnode.events.follow import Gap, Item, follow
from jobnode.events.hub import EventHub
from jobnode.events.resume import id_before_ms, parse_id
from jobnode.services.jobs import JobService
from jobnode.storage.redis.job_logs import JobLogs

__all__ = ["EventService", "Gap", "Item", "parse_filter", "terminal_event"]

# A job's events are replayed from a little before its creation time: that time is the API
# node's clock, the stream ids the Redis server's.
CLOCK_MARGIN_MS = 5_000
TERMINAL_EVENT = {COMPLETED: "job.completed", FAILED: "job.dead", CANCELLED: "job.cancelled"}


class EventService:
    def __init__(self, hub: EventHub, jobs: JobService, logs: JobLogs, *, heartbeat_s: float,
                 stream_tokens: StreamTokens | None = None) -> None:
        self.hub = hub
        self.jobs = jobs
        self.job_logs = logs
        self.heartbeat_s = heartbeat_s
        self.stream_tokens = stream_tokens

    @staticmethod
    def visibility(principal: Principal | None) -> Visibility:
        if principal is None or principal.role == ADMIN:  # auth off, or an admin
            return EVERYTHING
        if principal.role == WORKER:
            return Visibility(jobs=False)
        return Visibility(owner=principal.subject)

    async def follow(self, event_filter: EventFilter, *, last_event_id: str | None,
                     on_overflow: Callable[[], None] | None = None) -> AsyncGenerator[Item, None]:
        """Subscribe, and return what to send (see jobnode.events.follow)."""
        if last_event_id is not None:
            parse_id(last_event_id)  # a bad id is the caller's 400, before the stream starts
        return await follow(self.hub, event_filter, last_event_id=last_event_id, heartbeat_s=self.heartbeat_s,
                            on_overflow=on_overflow)

    async def job(self, job_id: str, *, owner: str | None) -> Job:
        """The job whose events or logs are asked for (NotFound, as for a read, if not visible)."""
        return await self.jobs.get(job_id, owner=owner)

    async def follow_job(self, job: Job, *, last_event_id: str | None,
                         on_overflow: Callable[[], None] | None = None) -> AsyncGenerator[Item, None]:
        """Subscribe to the job's events from its submission (or after `last_event_id`); what
        to send ends after its terminal event. A finished job gets its terminal event at once."""
        if job.is_terminal:
            return _once(terminal_event(job))
        if last_event_id is not None:
            parse_id(last_event_id)
            start, report_gap = last_event_id, True
        else:
            start, report_gap = id_before_ms(to_epoch_ms(job.created_at) - CLOCK_MARGIN_MS), False
        items = await follow(self.hub, EventFilter(jobs=(job.id,)), last_event_id=start,
                             heartbeat_s=self.heartbeat_s, on_overflow=on_overflow)
        return _until_terminal(job.id, items, report_gap)

    async def logs(self, job_id: str, *, owner: str | None) -> list[dict[str, Any]]:
        await self.job(job_id, owner=owner)
        return await self.job_logs.read(job_id)

    def issue_stream_token(self, principal: Principal) -> IssuedToken:
        if self.stream_tokens is None:
            raise NotFound("authentication is off on this node (AUTH_ENABLED=false): streams need no token")
        return self.stream_tokens.issue(principal)


async def _once(item: Item) -> AsyncGenerator[Item, None]:
    yield item


async def _until_terminal(job_id: str, items: AsyncGenerator[Item, None], report_gap: bool
                          ) -> AsyncGenerator[Item, None]:
    try:
        async for item in items:
            if isinstance(item, Event) and item.job != job_id:
                continue  # a longer id with this one as its prefix
            if isinstance(item, Gap) and item.reason == "retention" and not report_gap:
                continue  # the job is older than the retention: its early events are gone, say nothing
            yield item
            if isinstance(item, Event) and item.terminal:
                return
    finally:
        await items.aclose()


def terminal_event(job: Job) -> Event:
    """A finished job's terminal event, made up from its record (it carries no stream id)."""
    queue = job.queue or DEFAULT_QUEUE
    data: dict[str, Any] = {"job": job.id, "type": job.type, "queue": queue, "attempt": job.attempts}
    if job.status == FAILED and job.error:
        data["error"] = job.error
    data["at"] = isoformat(job.finished_at or job.updated_at)
    return Event(id="", name=TERMINAL_EVENT[job.status], data=data, job=job.id, type=job.type,
                 queue=queue, owner=job.submitted_by)
