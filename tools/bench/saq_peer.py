"""The SAQ side of `--compare saq`: the same drain and latency workloads through SAQ, on the same Redis.

SAQ keeps each job, with its `completed` time (epoch ms), in Redis for its `ttl`, so finish
times are read back from SAQ's own records; it keeps nothing durable beyond Redis, so there is
no `durable` figure. Its worker runs in a process of its own with `concurrency` = the workers
of one jobnode node. The drain queues the jobs scheduled for one instant T, as jobnode's drain
does. SAQ schedules by the whole second and moves due jobs to its queue on a 1 s timer
(`schedule`, which it also uses as a lock's expiry, so it cannot go lower), so its drain can
start up to a second after T: `first_start_ms` shows it, and `from_first_start` is the drain
measured from the first job's start instead.

Run as `python -m tools.bench.saq_peer REDIS_URL QUEUE CONCURRENCY` it is that worker.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tools.bench.cluster import PEER_STOP_GRACE_S, BenchError, progress, stop_process_group
from tools.bench.resources import CpuWatch
from tools.bench.peer_worker import start_peer_worker
from tools.bench.workloads import offer_open_loop, percentiles_ms

ENQUEUE_CONCURRENCY = 32
POLL_S = 0.05
READ_CHUNK = 1000
JOB_TTL_S = 3600


async def noop(ctx: dict[str, Any]) -> dict[str, Any]:
    """The no-op job: SAQ's counterpart of jobnode's `echo` with an empty payload."""
    return {}


def run_worker(redis_url: str, name: str, concurrency: int) -> None:
    from saq import Queue, Worker

    queue = Queue.from_url(redis_url, name=name)
    worker = Worker(queue, functions=[noop], concurrency=concurrency)
    asyncio.run(worker.start())  # returns on SIGTERM/SIGINT, after its jobs finished


class SaqRun:
    """One SAQ worker process and a queue to enqueue into it."""

    def __init__(self, redis_url: str, concurrency: int, work_dir: Path, timeout_s: float) -> None:
        try:
            from saq import Queue
        except ModuleNotFoundError:
            raise BenchError("--compare saq needs saq: pip install -e '.[bench]'") from None
        self.name = f"bench-saq-{os.getpid()}-{time.time_ns()}"
        self.queue = Queue.from_url(redis_url, name=self.name)
        self.args = [redis_url, self.name, str(concurrency)]
        self.log_path = work_dir / "saq-worker.log"
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> SaqRun:
        await self.queue.connect()
        self.process = start_peer_worker("tools.bench.saq_peer", self.args, self.log_path)
        await self.finish_times(await self.enqueue(1))  # ready once it has run one job
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.process:
            stop_process_group(self.process, PEER_STOP_GRACE_S)
        await self.queue.disconnect()

    async def enqueue(self, count: int, scheduled_s: int = 0) -> list[str]:
        """Enqueue `count` no-ops (scheduled for that epoch second, if given); their keys."""
        keys: list[str] = [""] * count
        slots = iter(range(count))

        async def sender() -> None:
            for n in slots:
                job = await self.queue.enqueue("noop", scheduled=scheduled_s, ttl=JOB_TTL_S, timeout=0)
                keys[n] = job.key

        await asyncio.gather(*(sender() for _ in range(min(ENQUEUE_CONCURRENCY, count))))
        return keys

    async def _records(self, keys: list[str]) -> list[Any]:
        jobs: list[Any] = []
        for start in range(0, len(keys), READ_CHUNK):
            jobs += await self.queue.jobs(keys[start:start + READ_CHUNK])
        return jobs

    async def finish_times(self, keys: list[str]) -> list[float]:
        """Wait until every job has completed; their finish times (epoch s)."""
        return [finish for _, finish in await self.start_finish_times(keys)]

    async def start_finish_times(self, keys: list[str]) -> list[tuple[float, float]]:
        """Wait until every job has completed; their (start, finish) times (epoch s)."""
        deadline = time.monotonic() + self.timeout_s
        while await self.queue.count("incomplete") > 0:
            if self.process and self.process.poll() is not None:
                raise BenchError(f"the SAQ worker exited with code {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"SAQ did not finish {len(keys)} jobs within {self.timeout_s:g}s")
            await asyncio.sleep(POLL_S)
        jobs = await self._records(keys)
        lost = sum(1 for job in jobs if not job or not job.completed)
        if lost:
            raise BenchError(f"SAQ lost {lost} of {len(keys)} job records")
        return [(job.started / 1000, job.completed / 1000) for job in jobs]


async def run_saq(redis_url: str, *, workers: int, work_dir: Path, drain_jobs: int, rate_per_s: float,
                  duration_s: float, timeout_s: float, cpu_pids: dict[str, int]) -> dict[str, Any]:
    async with SaqRun(redis_url, workers, work_dir, timeout_s) as saq:
        pids = {**cpu_pids, "saq_worker": saq.process.pid if saq.process else 0, "bench": os.getpid()}
        progress(f"saq: drain of {drain_jobs} jobs (concurrency {workers})")
        due = int(time.time() + drain_jobs / 1000 * 1.5 + 2.0)  # SAQ schedules by the whole second
        keys = await saq.enqueue(drain_jobs, due)
        acked = time.time()
        start = max(due, acked)
        async with CpuWatch(pids) as watch:
            times = await saq.start_finish_times(keys)
            first, last = min(s for s, _ in times), max(f for _, f in times)
            pipeline_s = last - start
            watch.window(first, last)
        drain = {"jobs": drain_jobs, "queued_before_start": acked <= due,
                 "first_start_ms": round((first - start) * 1000, 1),
                 "pipeline": {"seconds": round(pipeline_s, 3), "jobs_per_s": round(drain_jobs / pipeline_s, 1)},
                 "from_first_start": {"seconds": round(last - first, 3),
                                      "jobs_per_s": round(drain_jobs / max(last - first, 1e-3), 1)},
                 "durable": None, **watch.report()}
        latency = await _latency(saq, rate_per_s, duration_s, pids)
    return {"drain": drain, "latency": latency,
            "settings": {"concurrency": workers, "schedule_timer_s": 1}}


async def _latency(saq: SaqRun, rate_per_s: float, duration_s: float, pids: dict[str, int]) -> dict[str, Any]:
    count = max(1, int(rate_per_s * duration_s))
    progress(f"saq: latency, {count} jobs at {rate_per_s:g}/s")
    sent: list[float] = [0.0] * count
    keys: list[str] = [""] * count

    async def one(n: int) -> None:
        sent[n] = time.time()
        keys[n] = (await saq.enqueue(1))[0]

    async with CpuWatch(pids) as watch:
        await offer_open_loop(count, rate_per_s, one)
        finishes = await saq.finish_times(keys)
    return {"offered_per_s": rate_per_s, "jobs": count,
            "submit_to_complete_ms": percentiles_ms([f - s for f, s in zip(finishes, sent)]),
            "resolution_ms": 1, **watch.report()}  # SAQ's completed is kept to the millisecond


if __name__ == "__main__":
    run_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
