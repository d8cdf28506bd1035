"""The Celery side of `--compare celery-mongo`: the same drain and latency through Celery with its MongoDB result backend.

Same servers as jobnode: Redis as the broker, the run's MongoDB for the results (Celery's
durable record of a finished task: one document per task, written by the worker). The
worker is Celery's default prefork pool with `-c` processes (2 by default, as the reference
figures were taken). The drain queues the tasks with an ETA at one instant T, as jobnode's
drain does; `pipeline` and `durable` are the same figure here (T → the last `date_done`,
which the worker stamps when it stores the result). Completion is polled in MongoDB once a
second: Celery has no cheaper signal, and the poll is kept rare because SecantusDB scans
for counts.

Run as `python -m tools.bench.celery_peer BROKER BACKEND DATABASE QUEUE CONCURRENCY` it is
that worker.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from tools.bench.cluster import PEER_STOP_GRACE_S, BenchError, progress, stop_process_group
from tools.bench.peer_worker import start_peer_worker
from tools.bench.workloads import percentiles_ms

TASK = "bench.noop"
POLL_S = 1.0
READY_TIMEOUT_S = 120.0


def noop() -> dict[str, Any]:
    """The no-op task: Celery's counterpart of jobnode's `echo` with an empty payload."""
    return {}


def make_app(broker: str, backend: str, database: str, queue: str) -> Any:
    from celery import Celery

    app = Celery("jobnode-bench", broker=broker, backend=backend)
    app.conf.update(task_default_queue=queue, mongodb_backend_settings={"database": database},
                    result_extended=False, broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)
    app.task(name=TASK)(noop)
    return app


def run_worker(broker: str, backend: str, database: str, queue: str, concurrency: int) -> None:
    app = make_app(broker, backend, database, queue)
    app.worker_main(["worker", "--pool", "prefork", "-c", str(concurrency), "-Q", queue, "--loglevel", "WARNING",
                     "--without-gossip", "--without-mingle", "--without-heartbeat"])


class CeleryRun:
    """One Celery worker process, a producer app, and the results collection."""

    def __init__(self, broker: str, mongodb_uri: str, concurrency: int, work_dir: Path, timeout_s: float) -> None:
        try:
            import celery  # noqa: F401
        except ModuleNotFoundError:
            raise BenchError("--compare celery-mongo needs celery: pip install -e '.[bench]'") from None
        tag = f"{os.getpid()}_{time.time_ns()}"
        self.database = f"bench_celery_{tag}"[:63]
        self.queue = f"bench-celery-{tag}"
        self.args = [broker, mongodb_uri, self.database, self.queue, str(concurrency)]
        self.app = make_app(broker, mongodb_uri, self.database, self.queue)
        self.mongo: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        self.results = self.mongo[self.database]["celery_taskmeta"]
        self.log_path = work_dir / "celery-worker.log"
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> CeleryRun:
        self.process = start_peer_worker("tools.bench.celery_peer", self.args, self.log_path)
        first = await asyncio.to_thread(self.send, [None])
        await self.wait_done(first, READY_TIMEOUT_S)  # ready once it has run one task
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.process:
            stop_process_group(self.process, PEER_STOP_GRACE_S)
        await self.mongo.drop_database(self.database)
        await self.mongo.close()
        self.app.close()

    def send(self, etas: list[datetime | None]) -> list[str]:
        """Publish one no-op per entry (to run at its ETA, if given); the task ids. Blocking."""
        return [self.app.send_task(TASK, eta=eta).id for eta in etas]

    async def wait_done(self, task_ids: list[str], timeout_s: float) -> dict[str, float]:
        """Wait for every task's result document; their date_done (epoch s) by id."""
        deadline = time.monotonic() + timeout_s
        while not await self._all_stored(task_ids):
            if self.process and self.process.poll() is not None:
                raise BenchError(f"the celery worker exited with code {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"celery did not finish {len(task_ids)} tasks within {timeout_s:g}s")
            await asyncio.sleep(POLL_S)
        wanted = set(task_ids)
        return {doc["_id"]: _epoch_s(doc["date_done"]) async for doc in self.results.find({}, {"date_done": 1})
                if doc["_id"] in wanted}

    async def _all_stored(self, task_ids: list[str]) -> bool:
        stored = {doc["_id"] async for doc in self.results.find({"status": "SUCCESS"}, {"_id": 1})}
        return stored.issuperset(task_ids)


def _epoch_s(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


async def run_celery(broker: str, mongodb_uri: str, *, concurrency: int, work_dir: Path, drain_jobs: int,
                     rate_per_s: float, duration_s: float, timeout_s: float) -> dict[str, Any]:
    async with CeleryRun(broker, mongodb_uri, concurrency, work_dir, timeout_s) as celery:
        progress(f"celery-mongo: drain of {drain_jobs} tasks (prefork -c {concurrency})")
        await celery.results.delete_many({})  # the warm-up task's result
        due = time.time() + drain_jobs / 500 * 1.5 + 2.0
        ids = await asyncio.to_thread(celery.send, [datetime.fromtimestamp(due, timezone.utc)] * drain_jobs)
        acked = time.time()
        start = max(due, acked)
        done = await celery.wait_done(ids, timeout_s)
        drain_s = max(done.values()) - start
        figure = {"seconds": round(drain_s, 3), "jobs_per_s": round(drain_jobs / drain_s, 1)}
        drain = {"jobs": drain_jobs, "queued_before_start": acked <= due, "pipeline": figure, "durable": figure}
        await celery.results.delete_many({})
        latency = await _celery_latency(celery, rate_per_s, duration_s)
    return {"drain": drain, "latency": latency,
            "settings": {"pool": "prefork", "concurrency": concurrency, "result_backend": "mongodb"}}


async def _celery_latency(celery: CeleryRun, rate_per_s: float, duration_s: float) -> dict[str, Any]:
    count = max(1, int(rate_per_s * duration_s))
    progress(f"celery-mongo: latency, {count} tasks at {rate_per_s:g}/s")
    sent: dict[str, float] = {}

    def offer() -> None:
        # Open loop from a thread: publishing is blocking in Celery.
        begin = time.monotonic()
        for n in range(count):
            pause = begin + n / rate_per_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            at = time.time()
            sent[celery.send([None])[0]] = at

    await asyncio.to_thread(offer)
    done = await celery.wait_done(list(sent), celery.timeout_s)
    return {"offered_per_s": rate_per_s, "jobs": count,
            "submit_to_complete_ms": percentiles_ms([done[task] - at for task, at in sent.items()]),
            "resolution_ms": 1}  # date_done is a BSON date, as jobnode's finished_at


if __name__ == "__main__":
    run_worker(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
