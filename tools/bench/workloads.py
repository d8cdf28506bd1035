"""The workloads run against one `jobnode dev` cluster: submit, drain, latency, and the writes they cost.

Times come from two places on one host: the bench's wall clock (when a request was sent or
answered) and the job records (`started_at`/`finished_at`, stamped by the nodes with
millisecond precision). Completion is read from MongoDB, the system of record, so
"durable" means what it says. Jobs are no-ops: `echo` with an empty payload.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from pymongo import AsyncMongoClient
from redis.asyncio import Redis
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.client import AsyncClient
from jobnode.core.job import STATUSES, TERMINAL
from jobnode.storage.redis.queue import JobQueue
from tools.bench.cluster import progress

BATCH = 500  # jobs per batch request, as `jobnode submit` sends them
# The end of a workload is noticed in Redis (queue and outbox empty: cheap to ask), then
# confirmed once in MongoDB. Polling MongoDB itself skews what is measured: SecantusDB answers
# a count, or a find by a list of ids, by scanning the collection, and such polls took a third
# or more of its time during a drain.
POLL_S = 0.05
UNFINISHED = sorted(set(STATUSES) - TERMINAL)
NOOP = {"type": "echo", "payload": {}}


def percentiles_ms(values_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max of durations in seconds, as milliseconds (nearest-rank)."""
    if not values_s:
        return {"p50": None, "p95": None, "p99": None, "max": None, "count": 0}
    ordered = sorted(values_s)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 2)

    return {"p50": rank(50), "p95": rank(95), "p99": rank(99), "max": round(ordered[-1] * 1000, 2),
            "count": len(ordered)}


def _epoch_s(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


class ClusterLoad:
    """Drives one cluster through its HTTP API and watches its MongoDB database."""

    def __init__(self, urls: Sequence[str], mongodb_uri: str, database: str, redis_url: str, key_prefix: str, *,
                 timeout_s: float) -> None:
        self.clients = [AsyncClient(url, timeout_s=60.0) for url in urls]
        self._next_client = itertools.cycle(self.clients)
        self.mongo: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
        self.db: AsyncDatabase = self.mongo[database]
        self.redis = Redis.from_url(redis_url)
        self.queue = JobQueue(self.redis, key_prefix)  # its depths tell when a workload is over
        self.timeout_s = timeout_s

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        await self.mongo.close()
        await self.redis.aclose()

    def client(self) -> AsyncClient:
        """The next node's client: load spreads round-robin over the cluster's nodes."""
        return next(self._next_client)

    # -- completion, read from MongoDB --------------------------------------------------

    async def wait_finished(self, what: str) -> float:
        """Wait until every job is terminal in MongoDB; returns the wall time it was seen."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            depths = await self.queue.depths()
            idle = not any(depths[name] for name in ("ready", "delayed", "processing", "outbox"))
            if idle and await self.db.jobs.count_documents({"status": {"$in": UNFINISHED}}, limit=1) == 0:
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what}: jobs still unfinished after {self.timeout_s:g}s: {depths}")
            await asyncio.sleep(POLL_S)

    async def newest_jobs_write(self) -> float | None:
        """When the server applied its newest write to the jobs collection (oplog wall clock), or None."""
        newest = await self.mongo.local["oplog.rs"].find_one({"ns": f"{self.db.name}.jobs"}, sort=[("ts", -1)])
        return _epoch_s(newest["wall"]) if newest and newest.get("wall") else None

    async def records(self, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The times of these jobs, read in one pass over the collection (see POLL_S)."""
        wanted = set(job_ids)
        fields = {"status": 1, "started_at": 1, "finished_at": 1}
        return [doc async for doc in self.db.jobs.find({}, fields) if doc["_id"] in wanted]

    # -- submitting ---------------------------------------------------------------------

    async def submit_batches(self, bodies: list[dict[str, Any]], concurrency: int) -> list[str]:
        """Submit in BATCH-sized requests, `concurrency` in flight; the ids, in order."""
        chunks = [bodies[i:i + BATCH] for i in range(0, len(bodies), BATCH)]
        ids: list[list[str]] = [[] for _ in chunks]
        queue = iter(range(len(chunks)))

        async def sender() -> None:
            for index in queue:
                jobs = await self.client().submit_batch(chunks[index])
                ids[index] = [job["id"] for job in jobs]

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return [job_id for chunk in ids for job_id in chunk]

    async def submit_single(self, count: int, concurrency: int) -> tuple[list[str], list[float]]:
        """Submit one job per request, `concurrency` requests in flight; the ids and ack latencies (s)."""
        remaining = iter(range(count))
        ids: list[str] = []
        acks: list[float] = []

        async def sender() -> None:
            for _ in remaining:
                sent = time.perf_counter()
                ids.append((await self.client().submit(**NOOP))["id"])
                acks.append(time.perf_counter() - sent)

        await asyncio.gather(*(sender() for _ in range(concurrency)))
        return ids, acks


async def run_submit(load: ClusterLoad, *, single: int, concurrency: int, batch_jobs: int,
                     batch_concurrency: int) -> dict[str, Any]:
    """Submit throughput through the API: one job per request, then batches of BATCH."""
    progress(f"submit: {single} single submits ({concurrency} in flight)")
    started = time.perf_counter()
    ids, acks = await load.submit_single(single, concurrency)
    single_s = time.perf_counter() - started
    progress(f"submit: {batch_jobs} jobs in batches of {BATCH} ({batch_concurrency} in flight)")
    started = time.perf_counter()
    ids += await load.submit_batches([dict(NOOP) for _ in range(batch_jobs)], batch_concurrency)
    batch_s = time.perf_counter() - started
    await load.wait_finished("submit")  # the next workload starts on an idle cluster
    return {
        "single": {"jobs": single, "concurrency": concurrency, "jobs_per_s": round(single / single_s, 1),
                   "ack_ms": percentiles_ms(acks)},
        "batch": {"jobs": batch_jobs, "batch": BATCH, "concurrency": batch_concurrency,
                  "jobs_per_s": round(batch_jobs / batch_s, 1)},
    }


async def run_drain(load: ClusterLoad, *, jobs: int, batch_concurrency: int, expected_submit_per_s: float,
                    while_draining: tuple[Callable[[], None], Callable[[], None]] | None = None) -> dict[str, Any]:
    """N no-op jobs queued first, then drained: `pipeline` (workers done) and `durable` (completed in MongoDB).

    They are queued as delayed jobs all due at one instant T, chosen far enough ahead that
    every submission is acknowledged before it: at T the whole backlog is in Redis and the
    workers start on it together. Both figures are measured from T (or from the last
    acknowledgement if that came later: then `queued_before_start` is false).
    `while_draining` is a (start, stop) pair called at T and once all are durable (a profiler)."""
    margin_s = jobs / max(expected_submit_per_s, 50.0) * 1.5 + 1.0
    due = datetime.now(timezone.utc).timestamp() + margin_s
    due_iso = datetime.fromtimestamp(due, timezone.utc).isoformat().replace("+00:00", "Z")
    progress(f"drain: queueing {jobs} jobs due in {margin_s:.1f}s")
    ids = await load.submit_batches([{**NOOP, "scheduled_at": due_iso} for _ in range(jobs)], batch_concurrency)
    acked = time.time()
    start = max(due, acked)
    if while_draining:
        await asyncio.sleep(max(0.0, due - time.time()))
        while_draining[0]()
    try:
        durable_at = await load.wait_finished("drain")
    finally:
        if while_draining:
            while_draining[1]()
    records = await load.records(ids)
    finishes = [_epoch_s(doc["finished_at"]) for doc in records if doc.get("finished_at")]
    starts = [_epoch_s(doc["started_at"]) for doc in records if doc.get("started_at")]
    completed = sum(1 for doc in records if doc.get("status") == "completed")
    pipeline_s = max(finishes) - start
    # Nothing writes to the jobs collection after the last completion: its oplog time is when
    # the drain became durable, to the millisecond. Without an oplog, the poll's time.
    last_write = await load.newest_jobs_write()
    durable_s = (last_write if last_write else durable_at) - start
    return {
        "jobs": jobs,
        "completed": completed,
        "queued_before_start": acked <= due,
        "first_start_ms": round((min(starts) - start) * 1000, 1) if starts else None,
        "pipeline": {"seconds": round(pipeline_s, 3), "jobs_per_s": round(jobs / pipeline_s, 1)},
        "durable": {"seconds": round(durable_s, 3), "jobs_per_s": round(jobs / durable_s, 1),
                    "measured_by": "oplog wall time of the last write" if last_write else
                    f"polling MongoDB every {POLL_S * 1000:g} ms"},
    }


async def run_latency(load: ClusterLoad, *, rate_per_s: float, duration_s: float,
                      durability: str | None = None) -> dict[str, Any]:
    """Open-loop load at a fixed offered rate: submit→complete per job, from the job's finished_at.

    `durability`: what each submission asks for (None: the node's default, `store`)."""
    count = max(1, int(rate_per_s * duration_s))
    body = {**NOOP, **({"durability": durability} if durability else {})}
    # A cluster that has just started may still be electing its leader: jobs sent then would
    # measure the start-up (a p99 near 1 s), not the steady state. One job goes through first.
    await load.client().submit(**NOOP)
    await load.wait_finished("latency warm-up")
    progress(f"latency: {count} jobs at {rate_per_s:g}/s" + (f", durability {durability}" if durability else ""))
    sent_at: dict[int, float] = {}
    ids: dict[int, str] = {}
    acks: list[float] = []

    async def one(n: int) -> None:
        sent_at[n] = time.time()
        job = await load.client().submit(**body)
        acks.append(time.time() - sent_at[n])
        ids[n] = job["id"]

    offered_s = await offer_open_loop(count, rate_per_s, one)
    await load.wait_finished("latency")
    by_id = {doc["_id"]: doc for doc in await load.records(list(ids.values()))}
    latencies = [_epoch_s(by_id[ids[n]]["finished_at"]) - sent_at[n] for n in ids
                 if by_id.get(ids[n], {}).get("finished_at")]
    return {
        "durability": durability or "store",
        "offered_per_s": rate_per_s,
        "achieved_offered_per_s": round(count / offered_s, 1) if offered_s > 0 else None,
        "jobs": count,
        "submit_to_complete_ms": percentiles_ms(latencies),
        "submit_ack_ms": percentiles_ms(acks),
        "resolution_ms": 1,
    }


async def offer_open_loop(count: int, rate_per_s: float, send: Callable[[int], Any]) -> float:
    """Start `send(n)` for n in 0..count-1 at `rate_per_s`, each at its own time whether or not
    earlier ones were answered (an open loop), wait for all; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    begin = loop.time()
    tasks = []
    for n in range(count):
        await asyncio.sleep(max(0.0, begin + n / rate_per_s - loop.time()))
        tasks.append(asyncio.create_task(send(n)))
    await asyncio.gather(*tasks)
    return loop.time() - begin
