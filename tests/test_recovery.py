"""Nothing acknowledged is lost: outbox replays, stranded jobs, Redis outages, shutdowns."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from pymongo import AsyncMongoClient

from jobnode.core.background import cancel_all
from jobnode.dev.embedded import EmbeddedRedis
from jobnode.core.job import Job, JobSpec, utcnow
from jobnode.pipeline.outbox import OutboxWriter, collapse
from jobnode.storage.redis.queue import JobQueue
from jobnode.pipeline.reconciler import Reconciler
from jobnode.storage.mongo.jobs import JobStore, Snapshot
from tests.harness import make_settings, running_node, start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until


def old_job(**spec) -> Job:
    job = Job.new(JobSpec(type="echo", **spec))
    job.created_at = job.updated_at = utcnow() - timedelta(minutes=5)
    return job


async def test_store_applies_only_newer_revisions(mongo_db):
    store = JobStore(mongo_db)
    job = old_job()
    await store.insert_many([job])
    await store.apply([Snapshot(job.id, 3, {"status": "completed"})])
    await store.apply([Snapshot(job.id, 2, {"status": "running"})])  # late, reordered replay
    await store.apply([Snapshot(job.id, 3, {"status": "running"})])  # duplicate rev
    assert (await store.get(job.id)).status == "completed"


async def test_outbox_collapses_a_jobs_changes_and_forgets_finished_jobs(redis_client, key_prefix, mongo_db):
    store, queue = JobStore(mongo_db), JobQueue(redis_client, key_prefix)
    job = old_job()
    await store.insert_many([job])
    await queue.enqueue([job])
    token = await _lead(queue)
    await queue.register("n", 1, ["w"])
    await queue.dispatch("n", token, max_jobs=1, strategy="round_robin", lease_ms=10_000, share_every=0)
    await queue.take("w", 10_000)
    for _ in range(2):  # the first heartbeat of a running job records it, once
        await queue.heartbeat(10_000, {"w": job.id})
    await queue.finish("w", job.id, "completed", result=b'{"ok": 1}')

    writer = OutboxWriter(queue, store, "n", max_batch=100)
    await writer.ensure_group()
    assert await writer.drain_once(">", block_ms=None) == 2  # running + completed entries
    assert writer.written == 1  # ... written as one update
    doc = await store.get(job.id)
    assert doc.status == "completed" and doc.result == {"ok": 1} and doc.attempts == 1
    assert await queue.live_state(job.id) == {}  # Redis let go of it once MongoDB had it
    assert (await queue.depths())["outbox"] == 0


async def test_running_reaches_mongodb_only_for_a_job_still_running_at_a_heartbeat(redis_client, key_prefix,
                                                                                  mongo_db):
    store, queue = JobStore(mongo_db), JobQueue(redis_client, key_prefix)
    quick, slow = old_job(), old_job()
    await store.insert_many([quick, slow])
    await queue.enqueue([quick, slow])
    token = await _lead(queue)
    await queue.register("n", 1, ["a", "b"])
    await queue.dispatch("n", token, max_jobs=2, strategy="round_robin", lease_ms=10_000, share_every=0)
    for worker in ("a", "b"):
        await queue.take(worker, 10_000)
    by_worker = {w["id"]: w["current_job"] for w in await queue.workers()}
    await queue.finish("a", by_worker["a"], "completed", result=b"null")
    await queue.heartbeat(10_000, {"a": None, "b": by_worker["b"]})

    writer = OutboxWriter(queue, store, "n", max_batch=100)
    await writer.ensure_group()
    assert await writer.drain_once(">", block_ms=None) == 2  # one entry per job
    assert (await store.get(by_worker["a"])).status == "completed"
    still_running = await store.get(by_worker["b"])
    assert still_running.status == "running" and still_running.attempts == 1
    assert still_running.started_at is not None and still_running.worker_id == "b"


def test_collapse_keeps_the_newest_entry_of_each_job_whatever_the_order():
    def entry(job_id: str, rev: int, status: str, as_bytes: bool) -> tuple[str, dict]:
        fields = {"id": job_id, "rev": str(rev), "status": status, "updated_ms": "1"}
        return "0-1", {k.encode(): v.encode() for k, v in fields.items()} if as_bytes else fields

    for as_bytes in (True, False):
        snaps = collapse([entry("a", 2, "running", as_bytes), entry("b", 1, "pending", as_bytes),
                          entry("a", 3, "completed", as_bytes), entry("b", 0, "pending", as_bytes)])
        assert {(s.id, s.rev, s.fields["status"]) for s in snaps} == {("a", 3, "completed"), ("b", 1, "pending")}


async def test_unacknowledged_outbox_entries_are_written_after_a_writer_crash(redis_client, key_prefix, mongo_db):
    store, queue = JobStore(mongo_db), JobQueue(redis_client, key_prefix)
    job, _ = await _cancel_read_by_a_writer_that_crashes(store, queue)
    restarted = OutboxWriter(queue, store, "n", max_batch=100)
    assert await restarted.flush(timeout_s=5) == 1
    assert (await store.get(job.id)).status == "cancelled"


async def test_reconciler_queues_jobs_only_mongodb_has(redis_client, key_prefix, mongo_db):
    store, queue = JobStore(mongo_db), JobQueue(redis_client, key_prefix)
    stranded, queued, finished = old_job(), old_job(), old_job()
    finished.status = "completed"
    await store.insert_many([stranded, queued, finished])
    await queue.enqueue([queued])
    reconciler = Reconciler(store, queue, grace_s=60)
    assert await reconciler.run_once() == 1
    assert (await queue.live_state(stranded.id))["status"] == "pending"
    assert await queue.live_state(finished.id) == {}
    assert await reconciler.run_once() == 0  # idempotent


async def test_the_reconcilers_scan_yields_every_old_unfinished_job_once_in_batches(mongo_db):
    store = JobStore(mongo_db)
    old = [old_job() for _ in range(5)]
    finished, young = old_job(), Job.new(JobSpec(type="echo"))
    finished.status = "completed"
    await store.insert_many([*old, finished, young])
    batches = [ids async for ids in store.unfinished_ids(updated_before=utcnow() - timedelta(minutes=1), batch=2)]
    assert sorted(len(ids) for ids in batches) == [1, 2, 2]
    assert sorted(i for ids in batches for i in ids) == sorted(job.id for job in old)


async def test_reconciler_leaves_young_jobs_alone(redis_client, key_prefix, mongo_db):
    store, queue = JobStore(mongo_db), JobQueue(redis_client, key_prefix)
    young = Job.new(JobSpec(type="echo"))
    await store.insert_many([young])  # may still be between its two writes
    assert await Reconciler(store, queue, grace_s=60).run_once() == 0


async def test_a_crash_between_the_two_writes_loses_nothing(start_node, mongo_db):
    client = await start_node(RECONCILE_INTERVAL="200ms")
    # The API process died after the MongoDB insert and before the Redis enqueue.
    job = old_job(payload={"survived": True})
    await JobStore(mongo_db).insert_many([job])

    async def completed():
        body = await (await client.get(f"/api/v1/jobs/{job.id}")).json()
        return body["status"] == "completed" and body

    done = await wait_until(completed, timeout_s=15, message="stranded job never ran")
    assert done["result"] == {"survived": True}


async def test_submit_answers_503_and_keeps_nothing_while_redis_is_down(tmp_path, mongo_server, mongo_db, key_prefix):
    with EmbeddedRedis(tmp_path / "redis") as redis_server:
        settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db.name)
        async with running_node(settings) as client:
            redis_server.stop()
            resp = await client.post("/api/v1/jobs", json={"type": "echo"})
            body = await resp.json()
            assert resp.status == 503 and body["error"]["code"] == "unavailable"
            assert await mongo_db.jobs.count_documents({}) == 0  # not acknowledged, not kept
            health = await client.get("/health")
            assert health.status == 503 and not (await health.json())["checks"]["redis"]["ok"]

            redis_server.start()
            resp = await wait_until(
                lambda: _submit_ok(client), timeout_s=15, message="submits never recovered after Redis came back"
            )
            job_id = (await resp.json())["id"]

            async def completed():
                return (await (await client.get(f"/api/v1/jobs/{job_id}")).json())["status"] == "completed"

            await wait_until(completed, timeout_s=15, message="job after the outage never completed")


async def _submit_ok(client):
    resp = await client.post("/api/v1/jobs", json={"type": "echo"})
    return resp if resp.status == 201 else None


async def test_a_job_longer_than_its_lease_keeps_running_on_one_worker(start_node):
    client = await start_node(JOB_LEASE_TTL="1s", WORKER_COUNT="2")
    resp = await client.post("/api/v1/jobs", json={"type": "sleep", "payload": {"seconds": 2.5}})
    job_id = (await resp.json())["id"]

    async def completed():
        body = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return body["status"] == "completed" and body

    done = await wait_until(completed, timeout_s=20, message="long job never completed")
    assert done["attempts"] == 1 and done["errors"] == []


async def test_graceful_shutdown_hands_back_and_another_node_finishes(redis_server, mongo_server, key_prefix, mongo_db):
    def settings(node_id):
        return make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db.name, NODE_ID=node_id,
                             WORKER_COUNT="1", SHUTDOWN_GRACE="100ms")

    async with running_node(settings("node-a")) as first:
        resp = await first.post("/api/v1/jobs", json={"type": "sleep", "payload": {"seconds": 1.5}})
        job_id = (await resp.json())["id"]

        async def running():
            return (await (await first.get(f"/api/v1/jobs/{job_id}")).json())["status"] == "running"

        await wait_until(running, timeout_s=10, message="job never started on the first node")
    async with running_node(settings("node-b")) as second:

        async def completed():
            body = await (await second.get(f"/api/v1/jobs/{job_id}")).json()
            return body["status"] == "completed" and body

        done = await wait_until(completed, timeout_s=15, message="handed-back job never completed")
        assert done["node_id"] == "node-b"
        assert done["attempts"] == 1  # the cut-off run was refunded


async def _lead(queue: JobQueue) -> int:
    from jobnode.storage.redis.lease import LeaderLease

    return await LeaderLease(queue.redis, queue.scripts, queue.prefix, "n", ttl_s=60).acquire()


async def _leave_a_transaction_open(mongo_url: str, db_name: str, writer: OutboxWriter, job_id: str):
    """Do what a writer killed mid-batch leaves behind: an uncommitted update of the job, which
    holds the document until the server gives up on the transaction (60 s on mongod)."""
    client: AsyncMongoClient = AsyncMongoClient(mongo_url)
    store = JobStore(client[db_name])
    writer.store = store
    session = await writer.mongo_session()
    await session.start_transaction()
    await store.jobs.update_one({"_id": job_id}, {"$set": {"status": "running"}}, session=session)
    return client  # kept open (not closed) as a killed process would: nothing ends the session


async def test_a_writer_killed_mid_transaction_does_not_hold_its_jobs_back(
        redis_client, key_prefix, mongo_server, mongo_db):
    store, queue = JobStore(mongo_db), JobQueue(redis_client, key_prefix)
    job = old_job()
    await store.insert_many([job])
    await queue.enqueue([job])
    await queue.register("n", 1, ["w"])
    await queue.dispatch("n", await _lead(queue), max_jobs=1, strategy="round_robin", lease_ms=10_000,
                         share_every=0)
    await queue.take("w", 10_000)
    await queue.finish("w", job.id, "completed", result=b"{}")
    # The dead writer read the `running` entry and died inside its transaction; the live one
    # reads `completed` itself, so it meets the held document before it claims anything.
    dead = OutboxWriter(queue, store, "dead", max_batch=1, claim_idle_ms=500)
    await dead.ensure_group()
    assert len(await dead._read(">", None)) == 1
    leftover = await _leave_a_transaction_open(mongo_server.url, mongo_db.name, dead, job.id)
    live = OutboxWriter(queue, store, "live", max_batch=100, claim_idle_ms=500)
    task = asyncio.create_task(live.run())
    try:
        # Well inside the 60 s after which the server would drop the transaction by itself.
        await wait_until(lambda: _has_status(store, job.id, "completed"), timeout_s=20,
                         message="the job stayed held back")
        assert not task.done(), "the writer gave up"
    finally:
        await cancel_all([task])  # until gone: drivers can swallow a single cancel
        await leftover.close()


async def test_a_restarted_writer_clears_its_own_unfinished_transaction(redis_client, key_prefix, mongo_server,
                                                                          mongo_db):
    store, queue = JobStore(mongo_db), JobQueue(redis_client, key_prefix)
    job, crashed = await _cancel_read_by_a_writer_that_crashes(store, queue)
    leftover = await _leave_a_transaction_open(mongo_server.url, mongo_db.name, crashed, job.id)
    try:
        restarted = OutboxWriter(queue, store, "n", max_batch=100)
        assert await restarted.flush(timeout_s=10) == 1
        assert (await store.get(job.id)).status == "cancelled"
    finally:
        await leftover.close()


async def _cancel_read_by_a_writer_that_crashes(store: JobStore, queue: JobQueue) -> tuple[Job, OutboxWriter]:
    """A cancelled job whose outbox entry writer "n" has read but never written."""
    job = old_job()
    await store.insert_many([job])
    await queue.enqueue([job])
    await queue.cancel(job.id)
    crashed = OutboxWriter(queue, store, "n", max_batch=100)
    await crashed.ensure_group()
    assert len(await crashed._read(">", None)) == 1  # read, then "crash" before writing
    return job, crashed


async def _has_status(store: JobStore, job_id: str, status: str) -> bool:
    return (await store.get(job_id)).status == status
