"""Where running jobs' progress and log lines go: batched to Redis by one task per node.

`job.progress()` and `job.log()` (jobnode.core.job) call the reporter the worker pool
attached to the job. Progress is throttled per job (jobnode.pipeline.progress) and sent with
progress.lua, which accepts it only from the worker that still runs the job; log lines are
appended to the job's log list (jobnode.storage.redis.job_logs). One flusher task sends what
is due in one or two round trips, however many jobs report.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import structlog

from jobnode.core.errors import Unavailable
from jobnode.core.job import isoformat, utcnow
from jobnode.pipeline.progress import Progress, ProgressThrottle
from jobnode.storage.redis.job_logs import JobLogs, cut_line
from jobnode.storage.redis.queue import JobQueue, ProgressReport

log = structlog.get_logger(__name__)

MAX_MESSAGE_CHARS = 200  # of a progress message
# Lines waiting to be sent, per job, while Redis is slow or away: beyond this the oldest go
# (the log keeps only the last lines anyway).
MAX_WAITING_LINES = 100


class RunningJobReporter:
    """The reporter one running job gets (the JobReporter protocol of jobnode.core.job)."""

    __slots__ = ("_reports", "job_id", "worker", "attempt")

    def __init__(self, reports: JobReports, job_id: str, worker: str, attempt: int) -> None:
        self._reports = reports
        self.job_id, self.worker, self.attempt = job_id, worker, attempt

    async def progress(self, fraction: float, message: str | None) -> None:
        self._reports.offer_progress(self, Progress(fraction, message[:MAX_MESSAGE_CHARS] if message else None))

    def log(self, message: str) -> None:
        line = {"at": isoformat(utcnow()), "attempt": self.attempt, "message": cut_line(message)}
        self._reports.add_line(self.job_id, line)


class JobReports:
    """Collects progress and log lines from this node's running jobs and sends them."""

    def __init__(self, queue: JobQueue, logs: JobLogs, *, progress_interval_s: float) -> None:
        self.queue = queue
        self.logs = logs
        self.progress_interval_s = progress_interval_s
        self._throttles: dict[str, tuple[RunningJobReporter, ProgressThrottle]] = {}
        self._lines: dict[str, list[dict[str, Any]]] = {}
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    def reporter(self, job_id: str, worker: str, attempt: int) -> RunningJobReporter:
        return RunningJobReporter(self, job_id, worker, attempt)

    def finished(self, job_id: str) -> None:
        """The job's attempt ended: its outcome supersedes any progress still waiting."""
        self._throttles.pop(job_id, None)

    def offer_progress(self, reporter: RunningJobReporter, progress: Progress) -> None:
        _, throttle = self._throttles.setdefault(
            reporter.job_id, (reporter, ProgressThrottle(self.progress_interval_s)))
        throttle.offer(progress)
        self._wake_at(throttle.due_at_s() or 0.0)

    def add_line(self, job_id: str, line: dict[str, Any]) -> None:
        if self._loop is not None and threading.get_ident() != self._thread:
            self._loop.call_soon_threadsafe(self.add_line, job_id, line)  # from a processor's thread
            return
        lines = self._lines.setdefault(job_id, [])
        lines.append(line)
        del lines[:-MAX_WAITING_LINES]
        self._wake.set()

    def _wake_at(self, when_s: float) -> None:
        loop = asyncio.get_running_loop()
        if when_s <= loop.time():
            self._wake.set()
        elif self._timer is None or self._timer.when() > when_s:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when_s, self._wake.set)

    async def run(self) -> None:
        self._loop, self._thread = asyncio.get_running_loop(), threading.get_ident()
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._timer = None
            try:
                await self.flush()
            except Unavailable as exc:
                log.warning("job_reports.redis_unavailable", error=str(exc))
                await asyncio.sleep(0.5)
                self._wake.set()

    async def flush(self) -> None:
        """Send the progress that is due and every waiting log line."""
        now = asyncio.get_running_loop().time()
        reports, later = [], []
        for reporter, throttle in self._throttles.values():
            progress = throttle.take(now)
            if progress is not None:
                reports.append(ProgressReport(reporter.worker, reporter.job_id, progress.fraction, progress.message))
            due = throttle.due_at_s()
            if due is not None:
                later.append(due)
        lines, self._lines = self._lines, {}
        try:
            if reports:
                await self.queue.progress(reports)
            if lines:
                await self.logs.append(lines)
        except Unavailable:
            for job_id, waiting in lines.items():  # keep them for the next try
                self._lines[job_id] = (waiting + self._lines.get(job_id, []))[-MAX_WAITING_LINES:]
            raise
        if later:
            self._wake_at(min(later))
