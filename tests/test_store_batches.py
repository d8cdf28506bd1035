"""JobStore.apply writes a batch of state changes in one transaction where the server has them."""

from __future__ import annotations

import asyncio

from jobnode.core.job import Job, JobSpec
from jobnode.storage.mongo.jobs import JobStore, Snapshot


async def stored_jobs(store: JobStore, count: int) -> list[Job]:
    jobs = [Job.new(JobSpec(type="echo")) for _ in range(count)]
    assert await store.insert_many(jobs) == [None] * count
    return jobs


async def test_a_batch_is_written_in_one_transaction_and_keeps_the_rev_guard(mongo_db):
    store = JobStore(mongo_db)
    jobs = await stored_jobs(store, 4)
    await store.apply([Snapshot(jobs[0].id, 5, {"status": "completed"})])  # one change: no transaction
    batch = [Snapshot(job.id, 3, {"status": "running", "attempts": 1}) for job in jobs]
    assert await store.apply(batch) == 3  # jobs[0] already holds rev 5: left alone
    assert store.transactions is True  # SecantusDB runs transactions
    got = {job.id: await store.get(job.id) for job in jobs}
    assert got[jobs[0].id].status == "completed" and got[jobs[0].id].rev == 5
    assert all(got[job.id].status == "running" and got[job.id].rev == 3 for job in jobs[1:])


async def test_a_server_without_transactions_gets_plain_bulk_writes(mongo_db):
    store = JobStore(mongo_db, transactions=False)  # as after a standalone mongod refused the first batch
    jobs = await stored_jobs(store, 3)
    assert await store.apply([Snapshot(job.id, 2, {"status": "completed"}) for job in jobs]) == 3
    assert {(await store.get(job.id)).status for job in jobs} == {"completed"}


async def test_concurrent_batches_over_the_same_jobs_end_at_the_newest_rev(mongo_db):
    store = JobStore(mongo_db)
    jobs = await stored_jobs(store, 50)
    # Two writers (two nodes' outbox writers replaying overlapping entries) race on every job.
    older = [Snapshot(job.id, 2, {"status": "running"}) for job in jobs]
    newer = [Snapshot(job.id, 3, {"status": "completed"}) for job in reversed(jobs)]
    await asyncio.gather(store.apply(older), store.apply(newer), store.apply(older))
    assert {((await store.get(job.id)).status, (await store.get(job.id)).rev) for job in jobs} == {("completed", 3)}


async def test_a_result_that_looks_like_an_expression_is_stored_as_it_is(mongo_db):
    # The rev guard is an update pipeline: without $literal, "$status" would be read as a field path
    # and {"$concat": ...} as an operator.
    store = JobStore(mongo_db)
    [job] = await stored_jobs(store, 1)
    result = {"path": "$status", "op": {"$concat": ["a", "b"]}, "$var": "$$ROOT", "list": ["$rev"]}
    assert await store.apply([Snapshot(job.id, 2, {"status": "completed", "result": result})]) == 1
    assert (await store.get(job.id)).result == result
