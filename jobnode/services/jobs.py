"""The job service: what the API can do with jobs, on top of the store and the queue.

Submission order is what makes "acknowledged means never lost" hold for a `store` job
(the default durability): the job is written to MongoDB (group commit), then queued in
Redis, then acknowledged. If Redis refuses, the insert is taken back and the caller gets
503; if that fails too, the reconciler will queue the job later, so it is still not lost.
A `queue` job is acknowledged once Redis holds it (its own group commit, one enqueue per
batch): its record reaches MongoDB through the outbox (jobnode/pipeline/outbox.py), and
until then a read finds it in Redis. docs/architecture.md says what each promises.

Reads merge both sides: MongoDB is the record, but the latest state of a job in flight is
in Redis (its changes reach MongoDB through the outbox a moment later), so a read shows
the Redis state when it is newer (higher rev).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import structlog

from jobnode.pipeline.circuit import Circuit
from jobnode.pipeline.commits import GroupCommit
from jobnode.pipeline.local_start import IdleWorkers
from jobnode.core.errors import Conflict, NotFound, Overloaded, Unavailable
from jobnode.core.job import CANCELLED, FAILED, QUEUE, STATUSES, TERMINAL, Job, JobSpec, utcnow
from jobnode.core.record import decode_document, decode_snapshot
from jobnode.observability import tracing
from jobnode.observability.logs import debug_enabled
from jobnode.observability.metrics import NodeMetrics
from jobnode.services.catalog import TypeCatalog
from jobnode.storage.redis.queue import JobQueue
from jobnode.storage.mongo.jobs import DuplicateIdempotencyKey, JobStore, Snapshot

log = structlog.get_logger(__name__)

STATS_CACHE_S = 1.0
# Bounded admission: at most this many write batches' worth of submissions wait per node;
# beyond it a submission is refused at once with 503 + Retry-After (see commits.py).
WAITING_BATCHES = 4
# Submit writes (insert, then enqueue) that may be in flight at once: a submission arriving
# during one leaves at once instead of waiting it out (see pipeline/commits.py).
SUBMIT_WRITES_IN_FLIGHT = 4
RETRYABLE = (FAILED, CANCELLED)
# A submit write that took this long to fail opens the circuit (see `_write_batch`).
SLOW_FAILURE_S = 1.0


@dataclass(frozen=True)
class Submitted:
    job: Job
    created: bool  # False: an earlier job with the same idempotency key


class JobService:
    """Submit, read, cancel, retry and delete jobs."""

    def __init__(self, store: JobStore, queue: JobQueue, *, catalog: TypeCatalog, max_batch: int,
                 metrics: NodeMetrics | None = None, idle_workers: IdleWorkers | None = None,
                 leader_known: Callable[[], bool] = lambda: True) -> None:
        self.store = store
        self.queue = queue
        # This node's idle workers, offered to each enqueue for a local start (None: LOCAL_START off),
        # while this node sees a leader: a node cut off from the majority starts nothing itself,
        # as no leader dispatches for it (a lease a dead leader left in Redis proves nothing).
        self.idle_workers = idle_workers
        self.leader_known = leader_known
        self.catalog = catalog
        self.metrics = metrics or NodeMetrics(catalog.known_types)
        self._commits: GroupCommit[Job, Job] = GroupCommit(self._write_batch, max_batch=max_batch,
                                                          max_waiting=WAITING_BATCHES * max_batch,
                                                          max_inflight=SUBMIT_WRITES_IN_FLIGHT)
        # `queue` jobs wait only for Redis: a group commit of their own, so that they never
        # wait behind a MongoDB insert of `store` jobs in the same batch.
        self._queued: GroupCommit[Job, Job] = GroupCommit(self._enqueue_batch, max_batch=max_batch,
                                                          max_waiting=WAITING_BATCHES * max_batch,
                                                          max_inflight=SUBMIT_WRITES_IN_FLIGHT)
        self._counts: tuple[float, dict[str, int]] | None = None
        # Opened by a submit write that found MongoDB or Redis unavailable (see pipeline/circuit.py).
        self.circuit = Circuit()

    @property
    def known_types(self) -> Collection[str]:
        """Every job type the cluster runs (as last read; `catalog.refresh()` reads again)."""
        return self.catalog.known_types

    def start(self) -> None:
        self._commits.start()
        self._queued.start()

    async def stop(self) -> None:
        await self._commits.stop()
        await self._queued.stop()

    async def submit(self, spec: JobSpec, *, submitted_by: str | None = None, owner: str | None = None,
                     request_id: str | None = None) -> Submitted:
        return (await self.submit_many([spec], submitted_by=submitted_by, owner=owner, request_id=request_id))[0]

    async def submit_many(self, specs: Sequence[JobSpec], *, submitted_by: str | None = None,
                          owner: str | None = None, request_id: str | None = None) -> list[Submitted]:
        """Make the jobs durable and queued; returns once every one of them is.

        `owner` (a non-admin caller) may not be handed another submitter's job through a reused
        idempotency key: that is a 409 which shows nothing of the other job. `request_id` (the
        API request's) travels with each job into its worker's log lines.
        """
        with tracing.span("jobnode submit", kind="producer",
                          attributes={"jobnode.jobs": len(specs),
                                      "jobnode.job.types": sorted({spec.type for spec in specs})}) as span:
            # The submission's span travels with each job, so the run on any node joins its trace.
            trace_context = tracing.current_traceparent()
            jobs = [Job.new(spec, submitted_by=submitted_by, request_id=request_id, trace_context=trace_context)
                    for spec in specs]
            if span is not None and len(jobs) == 1:
                span.set_attribute("jobnode.job.id", jobs[0].id)
            refuse_s = self.circuit.refuse_for(time.monotonic())
            if refuse_s > 0:
                raise Overloaded(f"submissions are refused for {refuse_s:.1f}s after a durable write that timed "
                                 f"out ({self.circuit.last_error}); retry then", retry_after_s=refuse_s)
            with tracing.span("jobnode durable write", attributes={"jobnode.jobs": len(jobs)}):
                outcomes = await self._write(jobs)
        submitted = []
        for job, outcome in zip(jobs, outcomes):
            if isinstance(outcome, DuplicateIdempotencyKey):
                first = await self.store.get_by_idempotency_key(outcome.args[0])
                if first is None:  # the first holder was deleted meanwhile
                    raise Conflict("a job with this idempotency key was just deleted; submit again")
                if not _visible(first, owner):
                    raise Conflict("this idempotency key is already used by another submitter; choose another key")
                submitted.append(Submitted(await self._with_live_state(first), created=False))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                submitted.append(Submitted(job, created=True))
                self.metrics.job_submitted(job.type)
                if debug_enabled(__name__):
                    log.debug("job.submitted", job_id=job.id, job_type=job.type, priority=job.priority)
        return submitted

    async def _write(self, jobs: list[Job]) -> list[Job | BaseException]:
        """Each job through the group commit of its durability; outcomes in the jobs' order."""
        queued = [job.durability == QUEUE for job in jobs]
        if all(queued):
            return await self._queued.submit_many(jobs)
        if not any(queued):
            return await self._commits.submit_many(jobs)
        stored_outcomes, queued_outcomes = await asyncio.gather(
            self._commits.submit_many([job for job, q in zip(jobs, queued) if not q]),
            self._queued.submit_many([job for job, q in zip(jobs, queued) if q]), return_exceptions=True)
        if isinstance(stored_outcomes, BaseException) or isinstance(queued_outcomes, BaseException):
            raise stored_outcomes if isinstance(stored_outcomes, BaseException) else queued_outcomes
        stored_iter, queued_iter = iter(stored_outcomes), iter(queued_outcomes)
        return [next(queued_iter) if q else next(stored_iter) for q in queued]

    async def _enqueue_batch(self, jobs: list[Job]) -> list[Job]:
        began_s = time.perf_counter()
        await self._enqueue(jobs)  # with AOF: what a `queue` acknowledgement waits for
        self.metrics.submit_written("queue_enqueue", time.perf_counter() - began_s)
        return jobs

    async def _write_batch(self, jobs: list[Job]) -> list[Job | Exception]:
        began_s = time.monotonic()
        try:
            written = await self._insert_and_enqueue(jobs)
        except Unavailable as exc:
            now_s = time.monotonic()
            # Only a slow failure opens the circuit: a server that refuses at once (full,
            # connection refused) answers the next callers quickly too, nothing piles up.
            if now_s - began_s >= SLOW_FAILURE_S:
                self.circuit.failed(now_s, exc.message)
            raise
        self.circuit.succeeded()
        return written

    async def _insert_and_enqueue(self, jobs: list[Job]) -> list[Job | Exception]:
        began_s = time.perf_counter()
        outcomes = await self.store.insert_many(jobs)
        inserted_s = time.perf_counter()
        self.metrics.submit_written("store_insert", inserted_s - began_s)
        stored = [job for job, err in zip(jobs, outcomes) if err is None]
        try:
            await self._enqueue(stored)
        except Unavailable:
            await self._take_back(stored)
            raise
        self.metrics.submit_written("queue_enqueue", time.perf_counter() - inserted_s)
        return [err if err is not None else job for job, err in zip(jobs, outcomes)]

    async def _enqueue(self, jobs: list[Job]) -> None:
        """Queue jobs; those an idle worker of this node may start at once begin there (local start)."""
        idle = self.idle_workers
        if idle is None or not self.leader_known():
            await self.queue.enqueue(jobs)
            return
        offered = idle.reserve(len(jobs))
        try:
            enqueued = await self.queue.enqueue_or_start(jobs, idle_workers=offered, lease_ms=idle.lease_ms)
            for worker, job in enqueued.started:
                idle.hand(worker, job)
        finally:
            idle.release(offered)

    async def _take_back(self, jobs: list[Job]) -> None:
        try:
            await self.store.delete_unqueued([job.id for job in jobs])
        except Unavailable:
            log.error("submit.take_back_failed", jobs=len(jobs), note="the reconciler will queue them")

    async def get(self, job_id: str, *, owner: str | None = None) -> Job:
        """The job; with `owner`, only if that subject submitted it (else the same 404 as a missing job)."""
        job = await self.store.get(job_id)
        if job is None:
            job = await self._awaiting_insert(job_id)
        if job is None or not _visible(job, owner):
            raise NotFound(f"no job with id {job_id!r}")
        return await self._with_live_state(job)

    async def _awaiting_insert(self, job_id: str) -> Job | None:
        """A `queue` job MongoDB does not hold yet, as Redis holds it; else None."""
        live = await self.queue.live_state(job_id)
        if not live.get("doc"):
            return None
        return merge_live_state(Job.from_document(decode_document(live["doc"])), live)

    async def list(
        self, *, status: str | None, type_: str | None, limit: int, cursor: str | None, owner: str | None = None,
        queue: str | None = None, job_id: str | None = None, idempotency_key: str | None = None,
    ) -> tuple[list[Job], str | None]:
        return await self.store.list(status=status, type_=type_, queue=queue, job_id=job_id,
                                     idempotency_key=idempotency_key, limit=limit, cursor=cursor,
                                     submitted_by=owner)

    async def cancel(self, job_id: str, *, owner: str | None = None) -> Job:
        job = await self.get(job_id, owner=owner)
        if job.status == CANCELLED:
            return job  # cancelling twice is not an error: clients may retry a cancel safely
        if job.is_terminal:
            raise Conflict(f"job {job_id} is already {job.status}", details={"status": job.status})
        outcome = await self.queue.cancel(job_id)
        if outcome is None:
            # Redis does not hold it (stranded before the reconciler got to it): record directly.
            now = utcnow()
            fields = {"status": CANCELLED, "finished_at": now, "updated_at": now}
            await self.store.apply([Snapshot(job_id, job.rev + 1, fields)])
            await self.queue.count_cancelled()
        elif not outcome[1] and outcome[0] != CANCELLED:
            raise Conflict(f"job {job_id} is already {outcome[0]}", details={"status": outcome[0]})
        return await self.get(job_id)

    async def retry(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job.status not in RETRYABLE:
            raise Conflict(
                f"only failed or cancelled jobs can be retried; job {job_id} is {job.status}",
                details={"status": job.status},
            )
        if await self.queue.retry(job) == "busy":
            raise Conflict(f"job {job_id} is running again already")
        return await self.get(job_id)

    async def delete(self, job_id: str) -> None:
        job = await self.get(job_id)
        if job.durability == QUEUE and await self.store.get(job_id) is None:
            # Its insert is still on the outbox and would bring it back after the delete.
            raise Conflict(f"job {job_id} is not in the store yet (durability queue); delete it in a moment")
        if not job.is_terminal:
            await self.queue.cancel(job_id)
        await self.queue.delete(job_id)
        await self.store.delete(job_id)

    async def counts(self) -> dict[str, int]:
        """Jobs per status, at a cost that does not grow with the history, cached briefly.

        Unfinished statuses are counted in MongoDB (an index range each: as many entries as
        there are jobs in that state, never the finished ones). Finished ones are the totals
        the scripts keep in Redis as jobs finish: every job that ever ended so, whether or
        not its record has since expired (retention), started from MongoDB's figures when
        Redis has none (a new Redis)."""
        now = asyncio.get_running_loop().time()
        if self._counts is None or now - self._counts[0] > STATS_CACHE_S:
            live = await self.store.count_statuses([s for s in STATUSES if s not in TERMINAL], stale_ok=True)
            totals = await self.queue.finished_totals()
            if None in totals.values():
                await self.rebuild_finished_totals()
                totals = await self.queue.finished_totals()
            self._counts = (now, {**live, **{name: value or 0 for name, value in totals.items()}})
        return self._counts[1]

    async def rebuild_finished_totals(self) -> None:
        """Seed the finished totals Redis lacks from the records MongoDB holds (one count each)."""
        await self.queue.seed_finished_totals(await self.store.count_statuses(sorted(TERMINAL)))

    async def _with_live_state(self, job: Job) -> Job:
        live = await self.queue.live_state(job.id)
        if not live or int(live.get("rev", -1)) <= job.rev:
            return job
        return merge_live_state(job, live)


def _visible(job: Job, owner: str | None) -> bool:
    # Jobs submitted while auth was off have no submitter: only admins see those.
    return owner is None or job.submitted_by == owner


def merge_live_state(job: Job, live: dict[str, str]) -> Job:
    """The job with the newer runtime fields Redis holds."""
    state = decode_snapshot(live)
    state["updated_at"] = state["updated_at"] or job.updated_at
    for attribute, value in state.items():
        setattr(job, attribute, value)
    return job
