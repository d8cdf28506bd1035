"""The `history` section: what a large finished history costs the API, and retention's hold on size.

1. On a fresh cluster, with an empty history: GET /api/v1/stats, the first page of
   GET /api/v1/jobs?status=failed, and the p99 of single submits.
2. `history_jobs` finished job records (completed, failed, cancelled) inserted straight into
   its MongoDB, as the outbox would have left them; then the same three figures again, and
   each as a ratio to the empty history's (target: at most 1.2).
3. On a second cluster whose finished jobs expire after a minute (JOB_RETENTION): a steady
   stream of submits for `steady_s`, sampling the database's data size, which should level
   off once the first jobs expire (the leader's retention sweep runs once a minute).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from pymongo import AsyncMongoClient
from pymongo.write_concern import WriteConcern

from jobnode.client import AsyncClient, ClientError
from tools.bench.cluster import progress
from tools.bench.workloads import NOOP, offer_open_loop, percentiles_ms

READS = 60  # requests per read figure
SUBMITS = 600  # single submits for the submit p99
SUBMIT_CONCURRENCY = 8
INSERT_BATCH = 5000
INSERTERS = 3
FINISHED = ("completed", "failed", "cancelled")
SIZE_SAMPLE_EVERY_S = 15.0


async def timed(call: Callable[[], Awaitable[Any]], count: int, budget_s: float = 60.0) -> dict[str, Any]:
    """Up to `count` calls one after another, fewer if they take more than `budget_s` together.
    A refused call (a 503 when the node's MongoDB query ran past MONGODB_TIMEOUT) counts in `errors`
    with its time."""
    spent: list[float] = []
    errors: dict[str, int] = {}
    for _ in range(count):
        if sum(spent) > budget_s:
            break
        began = time.perf_counter()
        try:
            await call()
        except ClientError as exc:
            errors[str(exc)[:120]] = errors.get(str(exc)[:120], 0) + 1
        spent.append(time.perf_counter() - began)
    return {**percentiles_ms(spent), "errors": errors}


async def submit_p99(client: AsyncClient) -> dict[str, Any]:
    remaining = iter(range(SUBMITS))
    acks: list[float] = []
    errors = 0

    async def sender() -> None:
        nonlocal errors
        for _ in remaining:
            began = time.perf_counter()
            try:
                await client.submit(**NOOP)
            except ClientError:
                errors += 1
            acks.append(time.perf_counter() - began)

    await asyncio.gather(*(sender() for _ in range(SUBMIT_CONCURRENCY)))
    return {**percentiles_ms(acks), "errors": errors}


async def api_figures(client: AsyncClient) -> dict[str, Any]:
    return {
        "stats_ms": await timed(client.stats, READS),
        "failed_first_page_ms": await timed(lambda: client.list(status="failed", limit=50), READS),
        "submit_ms": await submit_p99(client),
    }


def history_document(n: int, now: datetime) -> dict[str, Any]:
    status = FINISHED[n % 3]
    created = now - timedelta(days=3, seconds=n)
    return {
        "_id": uuid.uuid4().hex, "type": "echo", "priority": 5, "payload": {"n": n}, "status": status,
        "max_retries": 3, "timeout_seconds": 300.0, "created_at": created, "updated_at": created,
        "attempts": 1, "scheduled_at": None, "idempotency_key": None, "started_at": created,
        "finished_at": created, "node_id": "node-1", "worker_id": "node-1-w0",
        "result": {"n": n} if status == "completed" else None,
        "error": "bench history" if status == "failed" else None, "errors": [], "submitted_by": None,
        "request_id": None, "queue": "default", "last_progress": None, "trace_context": None,
        "schedule": None, "scheduled_for": None, "rev": 3,
        "expire_at": created + timedelta(days=7),  # the default retention, so not due in the run
    }


async def insert_history(mongodb_uri: str, database: str, count: int) -> float:
    """Insert `count` finished job records; returns the seconds it took."""
    mongo: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
    jobs = mongo[database].get_collection("jobs", write_concern=WriteConcern(w=1))
    now = datetime.now(timezone.utc)
    began = time.monotonic()
    starts = iter(range(0, count, INSERT_BATCH))

    async def inserter() -> None:
        for start in starts:
            batch = [history_document(n, now) for n in range(start, min(count, start + INSERT_BATCH))]
            await jobs.insert_many(batch, ordered=False)
            if start and start % 100_000 == 0:
                progress(f"history: {start} records inserted ({time.monotonic() - began:.0f}s)")

    try:
        await asyncio.gather(*(inserter() for _ in range(INSERTERS)))
    finally:
        await mongo.close()
    return time.monotonic() - began


async def run_history(urls: list[str], mongodb_uri: str, database: str, *, history_jobs: int) -> dict[str, Any]:
    async with AsyncClient(urls[0], timeout_s=120.0) as client:
        progress("history: API figures with an empty history")
        empty = await api_figures(client)
        progress(f"history: inserting {history_jobs} finished job records")
        insert_s = await insert_history(mongodb_uri, database, history_jobs)
        progress("history: API figures with the history")
        full = await api_figures(client)
    ratios = {name: _ratio(full[name]["p99"], empty[name]["p99"]) for name in empty}
    return {"history_jobs": history_jobs, "insert_seconds": round(insert_s, 1), "empty": empty,
            "with_history": full, "p99_ratio": ratios}


async def run_retention_steady(urls: list[str], mongodb_uri: str, database: str, *, rate_per_s: float,
                               duration_s: float) -> dict[str, Any]:
    """Submit at `rate_per_s` for `duration_s`, sampling the database's data size."""
    progress(f"history: steady run with a 1-minute retention, {rate_per_s:g} jobs/s for {duration_s:g}s")
    mongo: AsyncMongoClient = AsyncMongoClient(mongodb_uri)
    samples: list[dict[str, Any]] = []
    outcomes = {"acknowledged": 0, "refused": 0}
    async with AsyncClient(urls[0], timeout_s=60.0) as client:

        async def one() -> None:
            try:
                await client.submit(**NOOP)
                outcomes["acknowledged"] += 1
            except Exception:  # a refusal under a burst is counted; the run goes on
                outcomes["refused"] += 1

        async def sample(at_s: float) -> None:
            stats = await mongo[database].command("dbStats")
            count = await mongo[database].jobs.estimated_document_count()
            samples.append({"at_s": round(at_s), "data_size_bytes": int(stats.get("dataSize", 0)),
                            "jobs": count})

        loop = asyncio.get_running_loop()
        begin = loop.time()

        async def sample_every() -> None:
            while True:
                await sample(loop.time() - begin)
                await asyncio.sleep(SIZE_SAMPLE_EVERY_S)

        n = int(duration_s * rate_per_s)
        sampling = asyncio.create_task(sample_every())
        try:
            await offer_open_loop(n, rate_per_s, lambda _: one())
        finally:
            sampling.cancel()
            await asyncio.gather(sampling, return_exceptions=True)
        try:
            await sample(loop.time() - begin)
        finally:
            await mongo.close()
    sizes = [s["data_size_bytes"] for s in samples]
    later = [s["data_size_bytes"] for s in samples if s["at_s"] >= min(180, duration_s / 2)]
    return {"rate_per_s": rate_per_s, "seconds": duration_s, "offered": n, **outcomes,
            "retention": "completed=1m,failed=1m,cancelled=1m", "samples": samples,
            "peak_data_size_bytes": max(sizes) if sizes else None,
            # Flat: the size at the end within 20% of the largest after the first minutes.
            "end_vs_late_peak": _ratio(sizes[-1], max(later)) if later and sizes else None}


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top is not None and bottom else None
