"""The store ceiling: how fast the MongoDB server itself takes jobnode's job documents.

Measured with jobnode's own code paths, not a copy of them: `JobStore.ensure_indexes`
(the same indexes), `JobStore.insert_many` (the submit group commit's write, journaled)
and `JobStore.apply` with snapshots built by the outbox's `to_snapshot` (the completion
write, also as plain bulk_writes for the server's own UpdateOne rate). Batches go one at a
time, as each group commit and outbox writer sends them.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from pymongo import AsyncMongoClient

from tools.bench.workloads import percentiles_ms
from jobnode.pipeline.commits import GroupCommit
from jobnode.core.settings import Settings
from jobnode.core.job import Job, JobSpec, to_epoch_ms, utcnow
from jobnode.pipeline.outbox import to_snapshot
from jobnode.services.jobs import SUBMIT_WRITES_IN_FLIGHT
from jobnode.storage.mongo.jobs import JOB_INDEXES, JobStore

_NODE_DEFAULTS = Settings()
BATCH = _NODE_DEFAULTS.commit_max_batch  # the largest batch a node writes
COMMIT_INTERVAL_S = _NODE_DEFAULTS.commit_interval_s  # an outbox writer's pause once caught up


def completion_entry(job: Job, rev: int) -> dict[str, str]:
    """The outbox entry a worker's completion of this job produces (Redis field names)."""
    now_ms = str(to_epoch_ms(utcnow()))
    return {"id": job.id, "rev": str(rev), "status": "completed", "attempts": "1", "worker": "bench/w1",
            "node": "bench", "started_ms": now_ms, "finished_ms": now_ms, "updated_ms": now_ms,
            "result": orjson.dumps({}).decode()}


async def measure_store_ceiling(mongodb_uri: str, database: str, jobs: int, rate_per_s: float,
                                latency_s: float) -> dict[str, Any]:
    """Insert `jobs` job documents, then complete each with one update; rates in docs/s.

    Then `insert_ms_at_rate`: the latency floor an acknowledgement stands on."""
    client: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
    try:
        db = client[database]
        store = JobStore(db)
        await store.ensure_indexes()
        batches = [[Job.new(JobSpec(type="echo")) for _ in range(BATCH)] for _ in range(max(1, jobs // BATCH))]
        started = time.perf_counter()
        for batch in batches:
            refused = [outcome for outcome in await store.insert_many(batch) if outcome is not None]
            if refused:
                raise RuntimeError(f"the store refused {len(refused)} inserts: {refused[0]}")
        insert_s = time.perf_counter() - started
        # The completion write two ways, on half of the documents each: plain bulk_writes (the
        # server's rate for UpdateOne by _id), and JobStore.apply as a node does it (one
        # transaction per batch where the server has them).
        half = max(1, len(batches) // 2)
        plain = JobStore(db, transactions=False)
        plain_s = await _complete(plain, batches[:half])
        apply_s = await _complete(store, batches[half:]) if len(batches) > 1 else plain_s
        count = sum(len(batch) for batch in batches)
        at_rate = await _insert_latency_at_rate(store, rate_per_s, latency_s)
        await client.drop_database(database)
    finally:
        await client.close()
    return {
        "documents": count,
        "batch": BATCH,
        "indexes": [index.document["name"] for index in JOB_INDEXES],
        "write_concern": "w=majority, j=true (JobStore's; one member, so the same as w=1)",
        "insert_docs_per_s": round(count / insert_s, 1),
        "update_docs_per_s": round(half * BATCH / plain_s, 1),
        "apply_docs_per_s": round((len(batches) - half) * BATCH / apply_s, 1) if len(batches) > 1 else None,
        "apply_in_transactions": store.transactions,
        "insert_ms_at_rate": at_rate,
    }


async def _insert_latency_at_rate(store: JobStore, rate_per_s: float, seconds: float) -> dict[str, Any]:
    """Journaled inserts offered at `rate_per_s` (open loop) and their completions, written
    the way a node writes them, with no HTTP, Redis or node in the way: the store's own
    latency for the write an acknowledgement waits for (the journaled insert), so its percentiles are the
    floor under the latency workload's `submit_ack_ms`.

    Inserts go through the submit path's group commit (`GroupCommit` over
    `JobStore.insert_many`, as many writes in flight as `JobService` allows); completions go
    to one sequential writer that applies whatever has queued up, at most a batch at a time,
    and pauses `COMMIT_INTERVAL` (its default) after a batch that was not full, as a node's
    outbox writer does. One `apply` per job from concurrent tasks would ask the server for
    three synced writes per job (transaction, its journal barrier, the insert) and measure
    a load no node produces."""
    loop = asyncio.get_running_loop()
    durations_s: list[float] = []
    completions: asyncio.Queue[Job] = asyncio.Queue()

    async def insert(jobs: list[Job]) -> list[Job | BaseException]:
        outcomes = await store.insert_many(jobs)
        return [job if error is None else error for job, error in zip(jobs, outcomes)]

    inserts: GroupCommit[Job, Job] = GroupCommit(insert, max_batch=BATCH, max_inflight=SUBMIT_WRITES_IN_FLIGHT)

    async def one_job() -> None:
        started = loop.time()
        job = await inserts.submit(Job.new(JobSpec(type="echo")))
        durations_s.append(loop.time() - started)
        completions.put_nowait(job)

    async def outbox_writer() -> None:
        while True:
            batch = [await completions.get()]
            while len(batch) < BATCH and not completions.empty():
                batch.append(completions.get_nowait())
            await store.apply([to_snapshot(completion_entry(job, rev=2)) for job in batch])
            for _ in batch:
                completions.task_done()
            if len(batch) < BATCH:
                await asyncio.sleep(COMMIT_INTERVAL_S)

    count = max(1, round(rate_per_s * seconds))
    inserts.start()
    writer = asyncio.create_task(outbox_writer())
    try:
        began = loop.time()
        tasks = []
        for i in range(count):
            await asyncio.sleep(max(0.0, began + i / rate_per_s - loop.time()))
            tasks.append(asyncio.create_task(one_job()))
        await asyncio.gather(*tasks)
        await completions.join()
    finally:
        await inserts.stop()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    return {"offered_per_s": rate_per_s, "with_completion_writes": True,
            "completion_writer": "one, batched, as a node's outbox writer",
            **percentiles_ms(durations_s)}


async def _complete(store: JobStore, batches: list[list[Job]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        await store.apply([to_snapshot(completion_entry(job, rev=2)) for job in batch])
    return time.perf_counter() - started


def lifecycle_ceiling(ceiling: dict[str, Any], inserts_per_job: float, updates_per_job: float) -> float:
    """Jobs/s the store allows when every job costs these inserts and updates, done one after another.

    Updates count at the faster of the two ways measured: the ceiling is the server's best."""
    update_rate = max(ceiling["update_docs_per_s"], ceiling.get("apply_docs_per_s") or 0)
    seconds_per_job = inserts_per_job / ceiling["insert_docs_per_s"] + updates_per_job / update_rate
    return round(1 / seconds_per_job, 1) if seconds_per_job > 0 else 0.0
