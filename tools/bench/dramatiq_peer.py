"""The dramatiq side of `--compare dramatiq`: the same drain and latency workloads through dramatiq, on the same Redis.

dramatiq's Redis broker keeps no record of a finished message unless a result backend is
configured, so the worker here runs the Results middleware with dramatiq's Redis backend and
the no-op actor returns the time it ran (`time.time()` when it returns): that stored result
is the finish time, read back in pipelined LINDEX calls. Storing a result costs the worker one
Redis pipeline per message, as any result record would; dramatiq keeps nothing durable
beyond Redis, so there is no `durable` figure.

The worker is one process with as many threads as a jobnode node has workers (what
`dramatiq --processes 1 --threads N` starts). The drain queues the messages delayed until one
instant T, as jobnode's drain does (dramatiq holds a delayed message in the worker until it is
due, then moves it to the work queue).

Run as `python -m tools.bench.dramatiq_peer REDIS_URL NAMESPACE THREADS` it is that worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tools.bench.cluster import PEER_STOP_GRACE_S, BenchError, progress, stop_process_group
from tools.bench.resources import CpuWatch
from tools.bench.peer_worker import start_peer_worker
from tools.bench.workloads import percentiles_ms

QUEUE = "bench"
POLL_S = 0.05
READ_CHUNK = 1000
SEND_THREADS = 4  # producers in parallel: a send is one blocking Redis script call


def noop() -> float:
    """The no-op job; its result is when it ran (the only finish time dramatiq can give back)."""
    return time.time()


def make_broker(redis_url: str, namespace: str) -> tuple[Any, Any, Any]:
    """The broker, its result backend and the no-op actor, alike in the producer and the worker."""
    from dramatiq.brokers.redis import RedisBroker
    from dramatiq.results import Results
    from dramatiq.results.backends import RedisBackend

    broker = RedisBroker(url=redis_url, namespace=namespace)
    backend = RedisBackend(url=redis_url, namespace=f"{namespace}-results")
    broker.add_middleware(Results(backend=backend, store_results=True))
    import dramatiq

    actor = dramatiq.actor(noop, broker=broker, actor_name="noop", queue_name=QUEUE, max_retries=0,
                           store_results=True)
    return broker, backend, actor


def run_worker(redis_url: str, namespace: str, threads: int) -> None:
    from dramatiq import Worker

    broker, _, _ = make_broker(redis_url, namespace)
    worker = Worker(broker, worker_threads=threads)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    worker.start()
    stopping.wait()
    worker.stop()
    broker.close()


class DramatiqRun:
    """One dramatiq worker process and a producer on the same broker namespace."""

    def __init__(self, redis_url: str, threads: int, work_dir: Path, timeout_s: float) -> None:
        try:
            self.broker, self.backend, self.actor = make_broker(
                redis_url, namespace := f"bench-dramatiq-{os.getpid()}-{time.time_ns()}")
        except ModuleNotFoundError:
            raise BenchError("--compare dramatiq needs dramatiq[redis]: pip install -e '.[bench]'") from None
        self.args = [redis_url, namespace, str(threads)]
        self.log_path = work_dir / "dramatiq-worker.log"
        self.timeout_s = timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> DramatiqRun:
        self.process = start_peer_worker("tools.bench.dramatiq_peer", self.args, self.log_path)
        await self.finish_times(await asyncio.to_thread(self.send, 1))  # ready once it ran one
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        if self.process:
            stop_process_group(self.process, PEER_STOP_GRACE_S)
        self.broker.close()

    def send(self, count: int, due: float | None = None) -> list[Any]:
        """Send `count` no-ops (each delayed until the epoch second `due`, if given); the messages. Blocking."""
        messages: list[Any] = [None] * count
        slots = iter(range(count))

        def sender() -> None:
            for n in slots:
                delay = None if due is None else max(0, int((due - time.time()) * 1000))
                messages[n] = self.actor.send_with_options(delay=delay)

        threads = [threading.Thread(target=sender) for _ in range(min(SEND_THREADS, count))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return messages

    def _read(self, keys: list[str]) -> list[Any]:
        client = self.backend.client
        values: list[Any] = []
        for start in range(0, len(keys), READ_CHUNK):
            with client.pipeline(transaction=False) as pipe:
                for key in keys[start:start + READ_CHUNK]:
                    pipe.lindex(key, 0)
                values += pipe.execute()
        return values

    async def finish_times(self, messages: list[Any]) -> list[float]:
        """Wait for every message's stored result; the finish times (epoch s)."""
        keys = [self.backend.build_message_key(message) for message in messages]
        deadline = time.monotonic() + self.timeout_s
        waiting = keys
        while True:
            values = await asyncio.to_thread(self._read, waiting)
            waiting = [key for key, value in zip(waiting, values) if value is None]
            if not waiting:
                break
            if self.process and self.process.poll() is not None:
                raise BenchError(f"the dramatiq worker exited with code {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise BenchError(f"dramatiq did not finish {len(waiting)} of {len(keys)} jobs in {self.timeout_s:g}s")
            await asyncio.sleep(POLL_S)
        values = await asyncio.to_thread(self._read, keys)
        return [float(self.backend.unwrap_result(self.backend.encoder.decode(value))) for value in values]


async def run_dramatiq(redis_url: str, *, workers: int, work_dir: Path, drain_jobs: int, rate_per_s: float,
                       duration_s: float, timeout_s: float, cpu_pids: dict[str, int]) -> dict[str, Any]:
    async with DramatiqRun(redis_url, workers, work_dir, timeout_s) as peer:
        pids = {**cpu_pids, "dramatiq_worker": peer.process.pid if peer.process else 0, "bench": os.getpid()}
        progress(f"dramatiq: drain of {drain_jobs} jobs ({workers} threads)")
        due = time.time() + drain_jobs / 1500 * 1.5 + 1.5
        messages = await asyncio.to_thread(peer.send, drain_jobs, due)
        acked = time.time()
        start = max(due, acked)
        async with CpuWatch(pids) as watch:
            pipeline_s = max(await peer.finish_times(messages)) - start
            watch.window(start, start + pipeline_s)
        drain = {"jobs": drain_jobs, "queued_before_start": acked <= due,
                 "pipeline": {"seconds": round(pipeline_s, 3), "jobs_per_s": round(drain_jobs / pipeline_s, 1)},
                 "durable": None, **watch.report()}
        latency = await _latency(peer, rate_per_s, duration_s, pids)
    return {"drain": drain, "latency": latency,
            "settings": {"processes": 1, "threads": workers, "result_backend": "redis"}}


async def _latency(peer: DramatiqRun, rate_per_s: float, duration_s: float, pids: dict[str, int]) -> dict[str, Any]:
    count = max(1, int(rate_per_s * duration_s))
    progress(f"dramatiq: latency, {count} jobs at {rate_per_s:g}/s")
    sent: list[float] = [0.0] * count
    messages: list[Any] = [None] * count

    def offer() -> None:
        # Open loop from a thread: sending is blocking in dramatiq.
        begin = time.monotonic()
        for n in range(count):
            pause = begin + n / rate_per_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[n] = time.time()
            messages[n] = peer.actor.send_with_options()

    async with CpuWatch(pids) as watch:
        await asyncio.to_thread(offer)
        finishes = await peer.finish_times(messages)
    return {"offered_per_s": rate_per_s, "jobs": count,
            "submit_to_complete_ms": percentiles_ms([f - s for f, s in zip(finishes, sent)]),
            "resolution_ms": 0.001, **watch.report()}


if __name__ == "__main__":
    run_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]))
