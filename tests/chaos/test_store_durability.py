"""Chaos: what JobStore acknowledged is still there after the store is killed with SIGKILL.

The outbox lets Redis forget a finished job as soon as `JobStore.apply` returns, so apply
returning must mean durable, like an acknowledged insert. Four writers keep applying
batches (each in a transaction on SecantusDB) while the server is killed; after a restart
from its files every batch that was acknowledged must be there. Without the journal
barrier (JobStore._journal_barrier) SecantusDB came back without 20-120 of about 2,000.
"""

from __future__ import annotations

import asyncio

import pytest
from pymongo import AsyncMongoClient

from jobnode.core.job import Job, JobSpec
from jobnode.storage.mongo.jobs import JobStore, Snapshot
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WRITERS = 4
JOBS_PER_WRITER = 200
BATCH = 10
ACKED_BEFORE_KILL = 400  # batches: enough commits that a lost tail would show


async def stored_revs(private_mongo) -> dict[str, int]:
    """Start the killed store again and read every job's rev from what it kept."""
    await asyncio.to_thread(private_mongo.start)
    client = AsyncMongoClient(private_mongo.url, serverSelectionTimeoutMS=10_000)
    try:
        return {doc["_id"]: doc["rev"] async for doc in client["durability"]["jobs"].find({}, {"rev": 1})}
    finally:
        await client.close()


def assert_no_acknowledged_apply_lost(stored: dict[str, int], acked: dict[str, int], note: str = "") -> None:
    """Every job's stored rev is at least the newest one its writer was told was applied."""
    behind = {job_id: (rev, stored[job_id]) for job_id, rev in acked.items() if stored[job_id] < rev}
    assert not behind, (f"{len(behind)} of {len(acked)} jobs lost an acknowledged apply{note}; "
                        f"(acknowledged rev, stored rev) e.g. {list(behind.values())[:5]}")


async def test_acknowledged_inserts_and_applies_survive_sigkill_of_the_store(private_mongo):
    client = AsyncMongoClient(private_mongo.url, serverSelectionTimeoutMS=3_000)  # the URL turns retries off
    store = JobStore(client["durability"])
    jobs = [Job.new(JobSpec(type="echo")) for _ in range(WRITERS * JOBS_PER_WRITER)]
    assert await store.insert_many(jobs) == [None] * len(jobs)
    acked: dict[str, int] = {}  # job id -> newest rev an acknowledged apply wrote
    batches = 0

    async def writer(mine: list[Job]) -> None:
        nonlocal batches
        rev = 0
        while True:
            rev += 1
            chunk = mine[(rev * BATCH) % len(mine):][:BATCH]
            try:
                await store.apply([Snapshot(job.id, rev, {"status": "running"}) for job in chunk])
            except Exception:  # the server is gone: what was acknowledged is what counts
                return
            acked.update((job.id, rev) for job in chunk)
            batches += 1

    tasks = [asyncio.create_task(writer(jobs[n::WRITERS])) for n in range(WRITERS)]
    try:
        await wait_until(lambda: batches >= ACKED_BEFORE_KILL, timeout_s=60,
                         message=f"only {batches} batches were acknowledged")
        assert store.transactions is True, "the batches did not go in transactions: nothing under test"
        await asyncio.to_thread(private_mongo.kill)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await client.close()

    stored = await stored_revs(private_mongo)
    assert len(stored) == len(jobs), f"{len(jobs) - len(stored)} acknowledged inserts were lost"
    assert_no_acknowledged_apply_lost(stored, acked)


async def test_applies_synced_by_later_inserts_survive_sigkill_of_the_store(private_mongo):
    """While submissions flow, a batch skips its own barrier and lets a journaled insert sent
    after its commit sync it (jobnode/storage/mongo/journal.py): the same promise must hold.

    The server is killed the moment a batch synced that way is acknowledged, before this
    process can send anything more: the inserts still in flight then were sent before its
    commit returned, and had the batch counted on them it would come back without its change."""
    client = AsyncMongoClient(private_mongo.url, serverSelectionTimeoutMS=3_000)
    store = JobStore(client["durability"])
    jobs = [Job.new(JobSpec(type="echo")) for _ in range(JOBS_PER_WRITER)]
    assert await store.insert_many(jobs) == [None] * len(jobs)
    acked: dict[str, int] = {}
    inserted: list[str] = []  # single inserts acknowledged while the batches went

    async def submitter() -> None:
        while True:
            job = Job.new(JobSpec(type="echo"))
            try:
                outcome = await store.insert_many([job])
            except Exception:  # the server is gone
                return
            if outcome == [None]:
                inserted.append(job.id)

    async def writer() -> None:
        rev = 0
        while True:
            rev += 1
            chunk = jobs[(rev * BATCH) % len(jobs):][:BATCH]
            covered_before = store.journal.covered_count
            await store.apply([Snapshot(job.id, rev, {"status": "running"}) for job in chunk])
            acked.update((job.id, rev) for job in chunk)
            if store.journal.covered_count >= ACKED_BEFORE_KILL // 4 and store.journal.covered_count > covered_before:
                private_mongo.kill()  # blocking on purpose: no other task runs before the kill
                return

    tasks = [asyncio.create_task(submitter()) for _ in range(2)]
    try:
        await asyncio.wait_for(writer(), timeout=60)
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await client.close()

    stored = await stored_revs(private_mongo)
    lost = [job_id for job_id in inserted if job_id not in stored]
    assert not lost, f"{len(lost)} of {len(inserted)} acknowledged inserts were lost"
    assert_no_acknowledged_apply_lost(stored, acked, f" ({store.journal.covered_count} batches synced by inserts)")
