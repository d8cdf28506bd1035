"""The arq side of `--compare arq`: the same drain and latency workloads through arq, on the same Redis.

arq keeps no durable job record, so only its pipeline figure exists. Its worker runs in a
process of its own (like a jobnode node) with as many concurrent jobs as one jobnode node
has workers, and arq's defaults otherwise (poll_delay 0.5 s). The drain queues the jobs
deferred to one instant, as jobnode's drain does; times come from arq's own result
records (finish_time, millisecond precision).

Run as `python -m tools.bench.arq_peer REDIS_URL QUEUE MAX_JOBS` it is that worker.
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

from tools.bench.cluster import PEER_STOP_GRACE_S, BenchError, progress, stop_process_group
from tools.bench.workloads import offer_open_loop, percentiles_ms

ENQUEUE_CONCURRENCY = 32
POLL_S = 0.05


async def noop(ctx: dict[str, Any]) -> dict[str, Any]:
    """The no-op job: arq's counterpart of jobnode's `echo` with an empty payload."""
    return {}


def run_worker(redis_url: str, queue: str, max_jobs: int) -> None:
    from arq.connections import RedisSettings
    from arq.worker import Worker

    Worker([noop], queue_name=queue, redis_settings=RedisSettings.from_dsn(redis_url), max_jobs=max_jobs,
           keep_result=3600, handle_signals=True).run()


class ArqRun:
    """One arq worker process and a pool to enqueue into it."""

    def __init__(self, redis_url: str, workers: int, work_dir: Path, timeout_s: float) -> None:
        self.redis_url = redis_url
        self.workers = workers
        self.queue = f"bench-arq-{os.getpid()}-{time.time_ns()}"
        self.log_path = work_dir / "arq-worker.log"
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None
        self.pool: Any = None

    async def __aenter__(self) -> ArqRun:
        try:
            from arq.connections import RedisSettings, create_pool
        except ModuleNotFoundError:
            raise BenchError("--compare arq needs arq: pip install -e '.[bench]'") from None
        self.pool = await create_pool(RedisSettings.from_dsn(self.redis_url))
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tools.bench.arq_peer", self.redis_url, self.queue, str(self.workers)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        await self.finish_times(await self.enqueue_at([None]))  # ready once it has run one job
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.process:
            stop_process_group(self.process, PEER_STOP_GRACE_S)
        if self.pool is not None:
            await self.pool.close()

    async def enqueue_at(self, due: list[datetime | None]) -> list[str]:
        """Enqueue one no-op per entry (deferred until it, if given); the job ids."""
        ids: list[str] = [""] * len(due)
        slots = iter(range(len(due)))

        async def sender() -> None:
            for n in slots:
                job = await self.pool.enqueue_job("noop", _queue_name=self.queue, _defer_until=due[n])
                ids[n] = job.job_id

        await asyncio.gather(*(sender() for _ in range(min(ENQUEUE_CONCURRENCY, len(due)))))
        return ids

    async def _all_exist(self, keys: list[str]) -> bool:
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            if await self.pool.exists(*chunk) < len(chunk):
                return False
        return True

    async def finish_times(self, job_ids: list[str]) -> list[float]:
        """Wait for every job's result; their finish times (epoch s)."""
        from arq.constants import result_key_prefix
        from arq.jobs import deserialize_result

        keys = [result_key_prefix + job_id for job_id in job_ids]
        deadline = time.monotonic() + self.timeout_s
        # arq removes a job from its queue in the same transaction that stores its result.
        while await self.pool.zcard(self.queue) > 0 or not await self._all_exist(keys):
            if self.process and self.process.poll() is not None:
                raise BenchError(f"the arq worker exited with code {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"arq did not finish {len(keys)} jobs within {self.timeout_s:g}s")
            await asyncio.sleep(POLL_S)
        finishes = []
        for start in range(0, len(keys), 1000):
            for raw in await self.pool.mget(keys[start:start + 1000]):
                finishes.append(deserialize_result(raw).finish_time.timestamp())
        return finishes


async def run_arq(redis_url: str, *, workers: int, work_dir: Path, drain_jobs: int, rate_per_s: float,
                  duration_s: float, timeout_s: float) -> dict[str, Any]:
    async with ArqRun(redis_url, workers, work_dir, timeout_s) as arq:
        progress(f"arq: drain of {drain_jobs} jobs (max_jobs {workers})")
        margin_s = drain_jobs / 500 * 1.5 + 1.0
        due = datetime.now(timezone.utc).timestamp() + margin_s
        ids = await arq.enqueue_at([datetime.fromtimestamp(due, timezone.utc)] * drain_jobs)
        acked = time.time()
        start = max(due, acked)
        pipeline_s = max(await arq.finish_times(ids)) - start
        drain = {"jobs": drain_jobs, "queued_before_start": acked <= due,
                 "pipeline": {"seconds": round(pipeline_s, 3), "jobs_per_s": round(drain_jobs / pipeline_s, 1)},
                 "durable": None}
        latency = await _arq_latency(arq, rate_per_s, duration_s)
    return {"drain": drain, "latency": latency, "settings": {"max_jobs": workers, "poll_delay_s": 0.5}}


async def _arq_latency(arq: ArqRun, rate_per_s: float, duration_s: float) -> dict[str, Any]:
    count = max(1, int(rate_per_s * duration_s))
    progress(f"arq: latency, {count} jobs at {rate_per_s:g}/s")
    sent: list[float] = [0.0] * count
    ids: list[str] = [""] * count

    async def one(n: int) -> None:
        sent[n] = time.time()
        ids[n] = (await arq.enqueue_at([None]))[0]

    await offer_open_loop(count, rate_per_s, one)
    finishes = await arq.finish_times(ids)
    return {"offered_per_s": rate_per_s, "jobs": count,
            "submit_to_complete_ms": percentiles_ms([f - s for f, s in zip(finishes, sent)]),
            "resolution_ms": 1}  # arq's finish_time is kept to the millisecond


if __name__ == "__main__":
    run_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
