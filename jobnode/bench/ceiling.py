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

from jobnode.bench.workloads import percentiles_ms
from jobnode.jobs import Job, JobSpec, to_epoch_ms, utcnow
from jobnode.outbox import to_snapshot
from jobnode.store import JOB_INDEXES, JobStore

BATCH = 500  # COMMIT_MAX_BATCH's default: the largest batch a node writes


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
        "write_concern": "w=1, j=true (JobStore's)",
        "insert_docs_per_s": round(count / insert_s, 1),
        "update_docs_per_s": round(half * BATCH / plain_s, 1),
        "apply_docs_per_s": round((len(batches) - half) * BATCH / apply_s, 1) if len(batches) > 1 else None,
        "apply_in_transactions": store.transactions,
        "insert_ms_at_rate": at_rate,
    }


async def _insert_latency_at_rate(store: JobStore, rate_per_s: float, seconds: float) -> dict[str, Any]:
    """Single journaled inserts offered at `rate_per_s` (open loop), each completed by an
    `apply` right after, as jobnode's submit and outbox would write a no-op job: the store's
    own insert latency under that load, with no HTTP, Redis or node in the way. An
    acknowledgement waits for this insert (SPEC §2), so its percentiles are the floor under
    the latency workload's `submit_ack_ms`."""
    loop = asyncio.get_running_loop()
    durations_s: list[float] = []

    async def one_job() -> None:
        job = Job.new(JobSpec(type="echo"))
        started = loop.time()
        await store.insert_many([job])
        durations_s.append(loop.time() - started)
        await store.apply([to_snapshot(completion_entry(job, rev=2))])

    count = max(1, round(rate_per_s * seconds))
    began = loop.time()
    tasks = []
    for i in range(count):
        await asyncio.sleep(max(0.0, began + i / rate_per_s - loop.time()))
        tasks.append(asyncio.create_task(one_job()))
    await asyncio.gather(*tasks)
    return {"offered_per_s": rate_per_s, "with_completion_writes": True, **percentiles_ms(durations_s)}


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
