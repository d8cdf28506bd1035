"""The worker pool: this node's workers running the jobs assigned to them.

The workers come in groups by the queues they serve (jobnode.core.queues: WORKER_COUNT
workers share the queues QUEUES gives no count, a queue with a count has workers of its
own); each group is registered with the queues it serves and the job types this node runs,
so the leader assigns a worker only jobs it can run.

Each worker has an inbox in Redis that the leader fills. A worker takes the next job from
it (take.lua checks the job is still its own and starts the lease), runs the processor
under the job's timeout, and reports the outcome (finish.lua ignores it if the job is no
longer ours, and in the same call starts the worker's next job if its inbox has one). A job
that a submit to this node started on an idle worker (local start, jobnode/pipeline/local_start.py)
comes to it in memory instead, already started.
Reports go through one group commit per node: the outcomes of every worker that finished
while the previous call was in flight travel together, so short jobs cost a fraction of a
round trip each and a lone job's report still leaves at once. One heartbeat task per node
keeps the workers registered and their leases renewed; when Redis says a job is no longer
ours (cancelled, or reclaimed after this node was presumed dead) the worker stops running it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
import structlog
from structlog.contextvars import bind_contextvars

from jobnode.core.background import cancel_all
from jobnode.pipeline.commits import GroupCommit
from jobnode.core.errors import Unavailable
from jobnode.core.queues import WorkerGroup
from jobnode.core.job import COMPLETED, FAILED, RETRYING, RUNNING, Job, utcnow
from jobnode.observability import tracing
from jobnode.observability.logs import debug_enabled
from jobnode.observability.metrics import NodeMetrics
from jobnode.pipeline.job_reports import JobReports
from jobnode.pipeline.local_start import IdleWorkers
from jobnode.processors.registry import PermanentError, ProcessorRegistry, UnknownProcessorType
from jobnode.storage.redis.queue import JobQueue, Report, TakenJob
from jobnode.pipeline.retry import RetryPolicy

log = structlog.get_logger(__name__)

INBOX_POLL_S = 0.5  # how long a blocked wait lasts before re-checking for shutdown
MAX_ERROR_CHARS = 2000
REDIS_DOWN_PAUSE_S = 0.5
# The status a report left its job in, as the attempt's outcome in the metrics.
METRIC_OUTCOME = {COMPLETED: "completed", RETRYING: "retry", FAILED: "failed"}


@dataclass
class PoolSettings:
    """What the pool needs from the node's settings."""

    node_id: str
    groups: list[WorkerGroup]
    capacity: int
    lease_ttl_s: float
    heartbeat_interval_s: float
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def worker_count(self) -> int:
        return sum(group.workers for group in self.groups)

    @property
    def lease_ms(self) -> int:
        return int(self.lease_ttl_s * 1000)


@dataclass
class Worker:
    """One worker slot and what it is doing now."""

    id: str
    queues: tuple[str, ...] = ("default",)
    current_job: str | None = None
    job_task: asyncio.Task[Any] | None = None
    # The whole of one job here, from take to reported outcome: shutdown waits for this,
    # not only for the processor, or a finished job's outcome could be cut off mid-report.
    execution: asyncio.Task[None] | None = None
    processed: int = 0
    failed: int = 0
    # The last job's report did not look for the next job (refused, lost, or not sent).
    report_skipped_take: bool = True
    # The blocking pop on the inbox (one at most). It goes on while the worker runs a job a
    # local start handed it; what it brings meanwhile goes back to the inbox (pop_goes_back).
    inbox_wait: asyncio.Task[str | None] | None = None
    pop_goes_back: bool = False


class WorkerPool:
    """Runs the workers and the heartbeat of one node."""

    def __init__(self, settings: PoolSettings, queue: JobQueue, registry: ProcessorRegistry,
                 metrics: NodeMetrics | None = None, reports: JobReports | None = None) -> None:
        self.settings = settings
        self.reports = reports  # where jobs' progress and log lines go (None: nowhere)
        self.queue = queue
        self.registry = registry
        self.metrics = metrics or NodeMetrics(registry.types())
        self.workers = []
        for group in settings.groups:
            first = len(self.workers) + 1
            self.workers += [Worker(f"{settings.node_id}/w{i}", group.queues) for i in range(first, first + group.workers)]
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._rng = random.Random()
        self._reports: GroupCommit[Report, tuple[str | None, TakenJob | None]] = GroupCommit(
            queue.finish_many, max_batch=max(1, settings.worker_count))
        self.idle = IdleWorkers(settings.lease_ms)  # for local start (jobnode/pipeline/local_start.py)
        self._returns: set[asyncio.Task[None]] = set()  # ids going back to an inbox (see _pop_done)

    async def start(self) -> None:
        if not self.workers:
            return
        await self._register(self.workers)
        self._reports.start()
        self._tasks = [asyncio.create_task(self._run_worker(w), name=w.id) for w in self.workers]
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))

    async def stop(self, grace_s: float) -> int:
        """Stop taking jobs, let running ones finish within the grace, hand back the rest."""
        self._stopping.set()
        self.idle.close()
        executions = [w.execution for w in self.workers if w.execution and not w.execution.done()]
        if executions:
            log.info("workers.draining", running=len(executions), grace_s=grace_s)
            await asyncio.wait(executions, timeout=grace_s)
        for worker in self.workers:
            if worker.job_task and not worker.job_task.done():
                worker.job_task.cancel()  # past the grace: the job goes back by handback
        # An outcome already on its way gets its report deadline (the lease) to arrive.
        unfinished = [e for e in executions if not e.done()]
        if unfinished:
            await asyncio.wait(unfinished, timeout=self.settings.lease_ttl_s)
        await cancel_all(self._tasks)
        await cancel_all(list(self._returns))
        if not self.workers:
            return 0
        await self._reports.stop()
        returned = await self.queue.handback([w.id for w in self.workers])
        log.info("workers.stopped", handed_back=returned)
        return returned

    async def _register(self, workers: list[Worker]) -> None:
        by_queues: dict[tuple[str, ...], list[str]] = {}
        for worker in workers:
            by_queues.setdefault(worker.queues, []).append(worker.id)
        for queues, ids in by_queues.items():
            await self.queue.register(self.settings.node_id, self.settings.capacity, ids,
                                      queues=queues, types=self.registry.types())

    @property
    def busy(self) -> int:
        return sum(1 for w in self.workers if w.current_job)

    async def _run_worker(self, worker: Worker) -> None:
        job: TakenJob | None = None  # the next job, when reporting the last one already took it
        # Whether the inbox may hold a job nobody looked for: not after a report that tried to
        # take the next job and found none, nor after a wait that timed out. Then the wait
        # goes straight to the blocking pop, one Redis call per job fewer on an idle worker.
        look_first = True
        try:
            while not self._stopping.is_set():
                try:
                    if job is None:
                        job = await self._wait_for_job(worker, look_first)
                        look_first = False
                    if job is not None:
                        worker.execution = asyncio.create_task(self._execute(worker, job), name=f"run:{job.id}")
                        job = None  # started: whatever happens next, never start it again here
                        job = await asyncio.shield(worker.execution)
                        look_first = worker.report_skipped_take
                except Unavailable as exc:
                    log.warning("worker.redis_unavailable", worker=worker.id, error=str(exc))
                    await asyncio.sleep(REDIS_DOWN_PAUSE_S)
        finally:
            # A job popped or started for it but not run stays the worker's: handback returns it.
            if worker.inbox_wait is not None:
                worker.inbox_wait.cancel()

    async def _wait_for_job(self, worker: Worker, look_first: bool = True) -> TakenJob | None:
        """The next job: one a local start began for this worker, else the next in its inbox
        (started here), waiting for either up to INBOX_POLL_S.

        `look_first`: try to take one before blocking (the inbox may hold a job already)."""
        worker.pop_goes_back = False  # waiting again: what the pop brings is this worker's next job
        handed = self.idle.take_handed(worker.id)
        if handed is not None:
            return self._handed_first(worker, handed)
        if look_first:
            job = await self.queue.take(worker.id, self.settings.lease_ms)
            if job is not None:
                return job
        if worker.inbox_wait is None:
            worker.inbox_wait = asyncio.create_task(self.queue.wait_inbox(worker.id, INBOX_POLL_S),
                                                    name=f"inbox:{worker.id}")
            worker.inbox_wait.add_done_callback(lambda pop: self._pop_done(worker, pop))
        handoff = self.idle.waiting(worker.id)
        try:
            await asyncio.wait((worker.inbox_wait, handoff), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.idle.not_waiting(worker.id)
        await self.idle.settled(worker.id)  # an enqueue may have started a job for it: that one first
        handed = self.idle.take_handed(worker.id)
        if handed is not None:
            return self._handed_first(worker, handed)
        popped, worker.inbox_wait = worker.inbox_wait, None
        job_id = popped.result()  # Unavailable, if Redis was
        if job_id is None:
            return None
        if self._stopping.is_set():  # popped during shutdown: put it back for handback to find
            await self.queue.return_to_inbox(worker.id, job_id)
            return None
        return await self.queue.take(worker.id, self.settings.lease_ms, job_id)

    def _handed_first(self, worker: Worker, handed: TakenJob) -> TakenJob:
        """The worker runs a job a local start handed it; its inbox pop's id goes back (_pop_done)."""
        worker.pop_goes_back = True
        if worker.inbox_wait is not None and worker.inbox_wait.done():  # it brought one already
            self._pop_done(worker, worker.inbox_wait)
        return handed

    def _pop_done(self, worker: Worker, pop: asyncio.Task[str | None]) -> None:
        """An inbox pop ended. If it ended while the worker runs a job a local start handed it,
        an id it brought goes back to the head of the inbox: there the worker's next report
        takes it, and heartbeats renew its lease while it waits, as for any job in an inbox
        (held in memory behind a long job, it would lapse and be reaped). A pop cannot be
        called off without risking the id it took, which is why it is left to end."""
        if not worker.pop_goes_back or worker.inbox_wait is not pop:
            return  # the worker is waiting on it: it takes what it brings
        worker.inbox_wait = None
        if pop.cancelled() or pop.exception() is not None or pop.result() is None:
            return
        returning = asyncio.create_task(self._return_to_inbox(worker, pop.result()), name=f"inbox:{worker.id}")
        self._returns.add(returning)
        returning.add_done_callback(self._returns.discard)

    async def _return_to_inbox(self, worker: Worker, job_id: str) -> None:
        try:
            await self.queue.return_to_inbox(worker.id, job_id)
        except Unavailable as exc:  # its lease lapses and the reaper queues it again
            log.warning("worker.inbox_return_failed", worker=worker.id, job_id=job_id, error=str(exc))

    async def _execute(self, worker: Worker, taken: TakenJob) -> TakenJob | None:
        """Run one job and report it; returns the worker's next job if the report took one."""
        worker.current_job = taken.id
        worker.report_skipped_take = True  # until a report that looked for the next job says otherwise
        # Only a first attempt measures submit→start: a retry's wait is mostly its back-off.
        self.metrics.attempt_started(taken.wait_s if taken.attempts == 1 else None)
        started = asyncio.get_running_loop().time()
        worker.job_task = asyncio.create_task(self._process(taken, worker.id), name=f"job:{taken.id}")
        try:
            outcome = await asyncio.shield(worker.job_task)
        except asyncio.CancelledError:
            if not worker.job_task.cancelled():
                raise  # the worker itself is being stopped
            outcome = None  # the job was taken away from us (cancelled or reclaimed)
        finally:
            worker.current_job = None
        if outcome is None:
            return None
        kind, body = outcome
        duration_s = asyncio.get_running_loop().time() - started
        if kind == "returned":
            return (await self._report(Report(worker.id, taken.id, "returned")))[1]
        if kind == "completed":
            worker.processed += 1
            report = Report(worker.id, taken.id, "completed", result=body)
        else:
            worker.failed += 1
            delay_ms = int(self.settings.retry.delay_s(taken.attempts, self._rng) * 1000)
            report = Report(worker.id, taken.id, kind, error=body.decode(), delay_ms=delay_ms)
        ended, next_job = await self._report(report)
        worker.report_skipped_take = ended is None and next_job is None
        # Only outcomes Redis accepted: a late one (lease lost, job cancelled) would count twice.
        # A retry with no retries left ends failed: Redis decides, and says so.
        if ended is not None:
            self.metrics.attempt_finished(taken.type, METRIC_OUTCOME.get(ended, kind), duration_s)
        return next_job

    async def _report(self, report: Report) -> tuple[str | None, TakenJob | None]:
        """Deliver an outcome, riding out a short Redis outage instead of losing the work.

        Past the lease the job has been (or will be) handed to another worker, so an
        outcome that still cannot be delivered is dropped and the job runs again. The report
        also takes the worker's next job, unless the pool is stopping.
        Returns the status the outcome left the job in (None: not accepted), and the next
        job if one was taken.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.lease_ttl_s
        while True:
            if not self._reports.running:  # stopped past every grace: handback returns the job
                return None, None
            try:
                next_lease_ms = 0 if self._stopping.is_set() else self.settings.lease_ms
                return await self._reports.submit(replace(report, next_lease_ms=next_lease_ms))
            except Unavailable as exc:
                if loop.time() >= deadline:
                    log.warning("job.outcome_lost", job_id=report.job_id, error=str(exc),
                                note="the job will run again")
                    return None, None
                await asyncio.sleep(REDIS_DOWN_PAUSE_S)

    async def _process(self, taken: TakenJob, worker_id: str) -> tuple[str, bytes]:
        """Run the processor in the job's trace (when tracing is on); returns (outcome, result or error text)."""
        attributes = {"jobnode.job.id": taken.id, "jobnode.job.type": taken.type, "jobnode.attempt": taken.attempts,
                      "jobnode.worker": worker_id, "jobnode.node": self.settings.node_id}
        with tracing.span("jobnode run", parent=taken.trace_context, kind="consumer", attributes=attributes) as span:
            outcome, body = await self._run_processor(taken, worker_id)
            if span is not None:
                span.set_attribute("jobnode.outcome", outcome)
                if outcome != "completed":
                    tracing.failed(span, body.decode(errors="replace"))
            return outcome, body

    async def _run_processor(self, taken: TakenJob, worker_id: str) -> tuple[str, bytes]:
        """Run the processor; returns (outcome, result or error text)."""
        # This task's own context: every line logged while the job runs, the processor's
        # included, names the job and the request that submitted it.
        bind_contextvars(job_id=taken.id, request_id=taken.request_id, job_type=taken.type,
                         attempt=taken.attempts, worker=worker_id)
        try:
            processor = self.registry.get(taken.type)
        except UnknownProcessorType:
            # Routing sends a worker only types its node registered, so this is a worker
            # group record that disagrees with this node: the job goes back, unharmed, for
            # a node that has the processor; it is never failed for a missing processor.
            log.warning("job.returned", reason=f"no processor for type {taken.type!r} on {self.settings.node_id}")
            return "returned", b""
        debug = debug_enabled(__name__)
        if debug:
            log.debug("job.started", wait_s=taken.wait_s)
        job = _as_job(taken, self.settings.node_id, worker_id)
        if self.reports is not None:
            job.attach_reporter(self.reports.reporter(taken.id, worker_id, taken.attempts))
        try:
            async with asyncio.timeout(taken.timeout_s):  # in this task: wait_for would start another
                result = await processor.process(job)
            encoded = orjson.dumps(result)
            if debug:
                log.debug("job.completed")
            return "completed", encoded
        except PermanentError as exc:
            log.info("job.failed_permanently", error=str(exc))
            return "failed", _error_text(f"{type(exc).__name__}: {exc}")
        except TimeoutError:
            log.info("job.timed_out", timeout_s=taken.timeout_s)
            return "retry", _error_text(f"timed out after {taken.timeout_s:g}s")
        except TypeError as exc:
            if "JSON" in str(exc) or "serializ" in str(exc):
                return "failed", _error_text(f"result is not JSON-serializable: {exc}")
            return "retry", _error_text(f"TypeError: {exc}")
        except Exception as exc:  # any processor failure is the job's failure, never the worker's
            log.info("job.attempt_failed", error=str(exc))
            return "retry", _error_text(f"{type(exc).__name__}: {exc}")
        finally:
            if self.reports is not None:
                self.reports.finished(taken.id)

    async def _heartbeat(self) -> None:
        while True:
            try:
                running = {w.id: w.current_job for w in self.workers}
                lost, missing = await self.queue.heartbeat(self.settings.lease_ms, running)
                for worker in self.workers:
                    if worker.current_job in lost and worker.job_task:
                        log.info("job.lost", job_id=worker.current_job, worker=worker.id)
                        worker.job_task.cancel()
                if missing:
                    log.warning("workers.reregistering", workers=missing)
                    await self._register([w for w in self.workers if w.id in missing])
            except Unavailable as exc:
                log.warning("heartbeat.redis_unavailable", error=str(exc))
            await asyncio.sleep(self.settings.heartbeat_interval_s)


def _as_job(taken: TakenJob, node_id: str, worker_id: str) -> Job:
    """The job as its processor sees it, including where it runs (for processors that log or record it)."""
    now = utcnow()
    return Job(
        id=taken.id,
        type=taken.type,
        priority=taken.priority,
        payload=taken.payload,
        status=RUNNING,
        max_retries=taken.max_retries,
        timeout_s=taken.timeout_s,
        created_at=now,
        updated_at=now,
        attempts=taken.attempts,
        started_at=now,
        node_id=node_id,
        worker_id=worker_id,
    )


def _error_text(message: str) -> bytes:
    return message[:MAX_ERROR_CHARS].encode()
