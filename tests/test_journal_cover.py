"""A committed outbox batch lets a journaled write sent after its commit sync it (jobnode/storage/mongo/journal.py).

The chaos suite (tests/chaos/test_store_durability.py) kills the store under this; here the
rules: only a write sent after the commit and taken whole by the server counts, and a batch
with no such write in sight writes its own barrier.
"""

from __future__ import annotations

import asyncio

from jobnode.core.job import Job, JobSpec
from jobnode.storage.mongo.jobs import BARRIER_COLLECTION, BARRIER_ID, JobStore, Snapshot
from jobnode.storage.mongo.journal import JournalCover
from tests.waiting import wait_until

LONG_S = 30.0  # a wait the test ends long before, by a write or by the rule under test


async def test_a_write_sent_before_the_commit_does_not_cover_it_however_late_it_returns():
    cover = JournalCover()
    early = cover.begin()  # sent before the commit returned: the server may have logged it first
    mark = cover.mark()
    waiting = asyncio.create_task(cover.covered(mark, start_within_s=LONG_S, covered_within_s=LONG_S))
    cover.end(early, synced=True)
    await asyncio.sleep(0)
    assert not waiting.done()
    later = cover.begin()
    cover.end(later, synced=True)
    assert await waiting is True
    assert (cover.covered_count, cover.uncovered_count) == (1, 0)


async def test_a_refused_write_covers_nothing_and_a_later_synced_one_does():
    cover = JournalCover()
    cover.end(cover.begin(), synced=True)  # a recent write: another is expected soon
    mark = cover.mark()
    waiting = asyncio.create_task(cover.covered(mark, start_within_s=LONG_S, covered_within_s=LONG_S))
    refused = cover.begin()
    cover.end(refused, synced=False)  # e.g. a duplicate idempotency key: maybe nothing committed
    await asyncio.sleep(0)
    assert not waiting.done() and not cover.is_covered(mark)
    cover.end(cover.begin(), synced=True)
    assert await waiting is True


async def decided_without_waiting(cover: JournalCover) -> bool:
    """`covered` for a fresh mark, which must answer without waiting for any write."""
    answer = asyncio.create_task(cover.covered(cover.mark(), start_within_s=LONG_S, covered_within_s=LONG_S))
    await asyncio.sleep(0)  # one turn of the loop: enough for an answer that needs no write
    assert answer.done(), "it waits for a write that nothing announced"
    return answer.result()


async def test_without_recent_writes_the_batch_does_not_wait_for_one():
    # Nothing was ever sent (a drain, an idle API): the caller writes its own barrier at once.
    assert await decided_without_waiting(JournalCover()) is False


async def test_a_barrier_of_its_own_does_not_make_the_next_batch_wait_for_an_insert():
    cover = JournalCover()
    cover.end(cover.begin(recurring=False), synced=True)  # the last batch's barrier: no submissions
    assert await decided_without_waiting(cover) is False
    cover.end(cover.begin(), synced=True)  # a submit insert: the next batch does wait for one
    mark = cover.mark()
    waiting = asyncio.create_task(cover.covered(mark, start_within_s=LONG_S, covered_within_s=LONG_S))
    await asyncio.sleep(0)
    assert not waiting.done()
    cover.end(cover.begin(), synced=True)
    assert await waiting is True


async def test_a_write_that_does_not_come_back_in_time_leaves_the_batch_to_its_own_barrier():
    cover = JournalCover()
    mark = cover.mark()
    cover.begin()  # sent after the commit, but its reply is slow (a loaded store)
    assert await cover.covered(mark, start_within_s=LONG_S, covered_within_s=0.0) is False


async def test_batches_applied_while_inserts_flow_skip_their_barrier_and_are_written(mongo_db):
    store = JobStore(mongo_db)
    jobs = [Job.new(JobSpec(type="echo")) for _ in range(40)]
    assert await store.insert_many(jobs) == [None] * len(jobs)
    barrier = mongo_db[BARRIER_COLLECTION]
    stop = asyncio.Event()

    async def submitter() -> None:  # a steady flow of journaled single inserts, as submissions make
        while not stop.is_set():
            assert await store.insert_many([Job.new(JobSpec(type="echo"))]) == [None]

    flow = asyncio.create_task(submitter())
    applied = 0
    try:
        await wait_until(lambda: store.journal.mark() > 40, timeout_s=30, message="the inserts did not start")
        for rev, chunk in enumerate((jobs[i:i + 4] for i in range(0, len(jobs), 4)), start=1):
            await store.apply([Snapshot(job.id, rev, {"status": "completed"}) for job in chunk])
            applied += 1
    finally:
        stop.set()
        await flow
    assert store.transactions is True  # SecantusDB: the batches went in transactions, as under test
    assert store.journal.covered_count > 0, "no batch was synced by an insert: nothing under test"
    written = (await barrier.find_one({"_id": BARRIER_ID}) or {}).get("commits", 0)
    assert written == store.journal.uncovered_count < applied
    assert {(await store.get(job.id)).status for job in jobs} == {"completed"}


async def test_batches_without_inserts_around_write_their_own_barrier(mongo_db):
    jobs = [Job.new(JobSpec(type="echo")) for _ in range(6)]
    assert await JobStore(mongo_db).insert_many(jobs) == [None] * len(jobs)
    store = JobStore(mongo_db)  # another node's store: it sent no journaled write at all
    for rev in (1, 2, 3):
        await store.apply([Snapshot(job.id, rev, {"status": "running"}) for job in jobs])
    assert store.journal.covered_count == 0
    assert (await mongo_db[BARRIER_COLLECTION].find_one({"_id": BARRIER_ID}))["commits"] == 3
