"""Durability chosen per job: `store` (acknowledged after the journaled insert) and `queue`
(acknowledged once Redis holds it, the record following through the outbox)."""

from __future__ import annotations

from jobnode.api.appkeys import JOB_SERVICE
from jobnode.core.job import Job, JobSpec
from jobnode.pipeline.outbox import OutboxWriter
from jobnode.pipeline.reconciler import Reconciler
from jobnode.storage.mongo.jobs import JobStore
from jobnode.storage.redis.queue import JobQueue
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until


def queued_job(**spec) -> Job:
    return Job.new(JobSpec(type="echo", durability="queue", **spec))


async def _lead(queue: JobQueue) -> int:
    from jobnode.storage.redis.lease import LeaderLease

    return await LeaderLease(queue.redis, queue.scripts, queue.prefix, "n", ttl_s=60).acquire()


async def _run_to_completion(queue: JobQueue, job_id: str) -> None:
    token = await _lead(queue)
    await queue.register("n", 1, ["w"])
    await queue.dispatch("n", token, max_jobs=1, strategy="round_robin", lease_ms=10_000, share_every=0)
    await queue.take("w", 10_000)
    await queue.finish("w", job_id, "completed", result=b'{"ok": 1}')


async def test_a_queue_job_reaches_mongodb_through_the_outbox_in_one_upsert(redis_client, key_prefix, mongo_db):
    store, queue = JobStore(mongo_db, transactions=True), JobQueue(redis_client, key_prefix)
    job = queued_job(payload={"n": 1})
    assert await queue.enqueue([job]) == 1
    assert await store.get(job.id) is None  # acknowledged with Redis alone
    await _run_to_completion(queue, job.id)

    writer = OutboxWriter(queue, store, "n", max_batch=100)
    await writer.ensure_group()
    assert await writer.drain_once(">", block_ms=None) == 2  # its insert and its completion
    stored = await store.get(job.id)
    assert stored.status == "completed" and stored.payload == {"n": 1} and stored.durability == "queue"
    assert stored.created_at == job.created_at.replace(microsecond=job.created_at.microsecond // 1000 * 1000)
    assert await queue.live_state(job.id) == {}  # forgotten only once MongoDB had all of it


async def test_a_change_that_overtakes_its_insert_is_held_until_the_insert_lands(redis_client, key_prefix,
                                                                                 mongo_db):
    """Two writers: one reads the insert and has not written it, the other reads the completion."""
    store, queue = JobStore(mongo_db, transactions=True), JobQueue(redis_client, key_prefix)
    job = queued_job()
    await queue.enqueue([job])
    slow, fast = OutboxWriter(queue, store, "slow", max_batch=100), OutboxWriter(queue, store, "fast", max_batch=100)
    await slow.ensure_group()
    insert = await slow.stream.read("slow", ">", count=100, block_ms=None)  # read, not yet written
    await _run_to_completion(queue, job.id)

    assert await fast.drain_once(">", block_ms=None) == 1
    assert fast.held == 1 and await store.get(job.id) is None
    assert (await queue.live_state(job.id))["status"] == "completed"  # not forgotten: MongoDB lacks it
    await slow.write(insert)
    assert (await store.get(job.id)).status == "pending"  # the insert, older than what is held
    assert await fast.drain_once("0", block_ms=None) == 1 and fast.held == 0  # the held change again
    assert (await store.get(job.id)).status == "completed"
    assert await queue.live_state(job.id) == {} and (await queue.depths())["outbox"] == 0


async def test_the_reconciler_leaves_queue_jobs_alone_and_a_lost_one_is_not_invented(redis_client, key_prefix,
                                                                                   mongo_db):
    store, queue = JobStore(mongo_db, transactions=True), JobQueue(redis_client, key_prefix)
    job = queued_job()
    await queue.enqueue([job])
    reconciler = Reconciler(store, queue, grace_s=0)
    assert await reconciler.run_once() == 0  # not in MongoDB yet: nothing to requeue, nothing deleted
    writer = OutboxWriter(queue, store, "n", max_batch=100)
    await writer.ensure_group()
    await writer.drain_once(">", block_ms=None)
    assert await reconciler.run_once() == 0  # in both: still nothing to do
    assert (await queue.live_state(job.id))["status"] == "pending"
    assert (await store.get(job.id)).status == "pending"


async def test_durability_comes_from_the_submission_then_the_type_then_the_node(start_node):
    node = await start_node(DURABILITY="queue", WORKER_COUNT="0")
    by_default = await node.post("/api/v1/jobs", json={"type": "echo"})
    assert by_default.status == 201 and (await by_default.json())["durability"] == "queue"
    job_id = (await by_default.json())["id"]
    read = await node.get(f"/api/v1/jobs/{job_id}")  # read before (or after) MongoDB holds it
    assert read.status == 200 and (await read.json())["status"] == "pending"

    chosen = await node.post("/api/v1/jobs", json={"type": "echo", "durability": "store"})
    assert (await chosen.json())["durability"] == "store"
    keyed = await node.post("/api/v1/jobs", json={"type": "echo", "idempotency_key": "k1"})
    assert (await keyed.json())["durability"] == "store"  # a key is checked by the store

    refused = await node.post("/api/v1/jobs", json={"type": "echo", "durability": "queue", "idempotency_key": "k2"})
    assert refused.status in (400, 422)
    assert (await refused.json())["error"]["details"]["field"] == "durability"
    wrong = await node.post("/api/v1/jobs", json={"type": "echo", "durability": "disk"})
    assert wrong.status in (400, 422) and (await wrong.json())["error"]["details"]["field"] == "durability"

    store = node.app[JOB_SERVICE].store
    stored = await wait_until(lambda: store.get(job_id), timeout_s=10, message="the queue job in MongoDB")
    assert stored.durability == "queue"


def test_a_types_durability_sits_between_the_submissions_and_the_nodes():
    from jobnode.core.job_types import TypeSpec
    from jobnode.services.catalog import TypeCatalog

    local = [TypeSpec("fast", durability="queue"), TypeSpec("plain")]
    catalog = TypeCatalog(None, None, "n", local, ["default"], default_durability="store")  # type: ignore[arg-type]
    specs = [JobSpec(type="fast"), JobSpec(type="fast", durability="store"), JobSpec(type="plain"),
             JobSpec(type="fast", idempotency_key="k")]
    admitted = catalog.admit(specs, [""] * len(specs))
    assert [spec.durability for spec in admitted] == ["queue", "store", "store", "store"]
    assert TypeSpec.from_json(local[0].to_json()).durability == "queue"  # as other nodes read it


async def test_a_queue_job_inserted_by_the_outbox_keeps_its_type_and_schedule_fields(redis_client, key_prefix,
                                                                                    mongo_db):
    # The insert's outbox entry is a snapshot like any other: one without `type` once wrote
    # the record with `type: null`, which the API then listed against its own schema.
    store, queue = JobStore(mongo_db, transactions=True), JobQueue(redis_client, key_prefix)
    job = queued_job(payload={"n": 2})
    await queue.enqueue([job])
    writer = OutboxWriter(queue, store, "n", max_batch=100)
    await writer.ensure_group()
    assert await writer.drain_once(">", block_ms=None) == 1
    stored = await store.get(job.id)
    assert (stored.type, stored.status, stored.schedule, stored.scheduled_for) == ("echo", "pending", None, None)
