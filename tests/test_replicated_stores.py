"""What a replicated Redis or MongoDB needs from jobnode, checked on one server of each.

- The fencing token never goes backwards when Redis forgets its last lease changes (as after
  a Sentinel failover to a replica that had not received them): new holders draw a floor from
  MongoDB. The failover itself, with real sentinels, is tests/chaos/test_sentinel_failover.py.
- MONGODB_READ_PREFERENCE reaches the listings and counts, and only them.
"""

from __future__ import annotations

from pymongo import ReadPreference

from jobnode.assembly import NodeServices
from jobnode.core.job import Job, JobSpec
from jobnode.core.settings import Settings
from jobnode.processors.catalog import build_registry
from jobnode.storage.mongo.fence import COLLECTION, FENCE_ID, FenceCounter
from jobnode.storage.mongo.jobs import JobStore
from jobnode.storage.redis.lease import LeaderLease
from jobnode.storage.redis.queue import JobQueue


def leases(queue: JobQueue, floors: FenceCounter | None, *nodes: str) -> list[LeaderLease]:
    return [LeaderLease(queue.redis, queue.scripts, queue.prefix, node, ttl_s=60, floors=floors) for node in nodes]


async def forget_since(redis, prefix: str, saved: dict[str, bytes | None]) -> None:
    """Put the lease keys back as they were: what a replica that missed the last writes holds."""
    for name, value in saved.items():
        if value is None:
            await redis.delete(f"{prefix}:{name}")
        else:
            await redis.set(f"{prefix}:{name}", value)


async def lease_keys(redis, prefix: str) -> dict[str, bytes | None]:
    return {name: await redis.get(f"{prefix}:{name}") for name in ("leader", "fence", "leader:last")}


async def test_a_token_is_never_handed_out_twice_when_redis_forgets_a_takeover(redis_client, key_prefix, mongo_db):
    queue = JobQueue(redis_client, key_prefix)
    floors = FenceCounter(mongo_db)
    a, b, c = leases(queue, floors, "a", "b", "c")
    first = await a.acquire()
    before_takeover = await lease_keys(redis_client, queue.prefix)
    await a.release()
    second = await b.acquire()
    assert second > first
    await forget_since(redis_client, queue.prefix, before_takeover)  # the failover lost b's takeover
    await a.release()  # a stepped down meanwhile (its lease is back in the forgetful Redis)
    third = await c.acquire()
    assert third > second, "a token already used by b was handed out again"
    # Renewals do not touch MongoDB: the counter stays where the last takeover left it.
    drawn = (await mongo_db[COLLECTION].find_one({"_id": FENCE_ID}))["value"]
    for _ in range(3):
        assert await c.acquire() == third
    assert (await mongo_db[COLLECTION].find_one({"_id": FENCE_ID}))["value"] == drawn


async def test_without_floors_a_forgetful_redis_reissues_a_token(redis_client, key_prefix):
    # The failure the floors exist for, shown on the same steps.
    queue = JobQueue(redis_client, key_prefix)
    a, b, c = leases(queue, None, "a", "b", "c")
    await a.acquire()
    before_takeover = await lease_keys(redis_client, queue.prefix)
    await a.release()
    second = await b.acquire()
    await forget_since(redis_client, queue.prefix, before_takeover)
    await a.release()
    assert await c.acquire() == second


async def test_a_redis_counter_ahead_of_mongodb_raises_it(redis_client, key_prefix, mongo_db):
    # A cluster that ran before the counter existed: Redis's counter is far ahead.
    queue = JobQueue(redis_client, key_prefix)
    await redis_client.set(f"{queue.prefix}:fence", 100)
    floors = FenceCounter(mongo_db)
    (a,) = leases(queue, floors, "a")
    assert await a.acquire() == 101
    assert (await mongo_db[COLLECTION].find_one({"_id": FENCE_ID}))["value"] == 101
    assert await floors.draw() == 102


async def test_a_node_waiting_for_a_held_lease_draws_nothing(redis_client, key_prefix, mongo_db):
    queue = JobQueue(redis_client, key_prefix)
    floors = FenceCounter(mongo_db)
    a, b = leases(queue, floors, "a", "b")
    await a.acquire()
    drawn = (await mongo_db[COLLECTION].find_one({"_id": FENCE_ID}))["value"]
    for _ in range(5):
        assert await b.acquire() is None
    assert (await mongo_db[COLLECTION].find_one({"_id": FENCE_ID}))["value"] == drawn


async def test_read_preference_applies_to_listings_and_counts_only(mongo_db):
    store = JobStore(mongo_db, stale_reads="secondaryPreferred")
    assert store.listed_jobs.read_preference == ReadPreference.SECONDARY_PREFERRED
    assert store.jobs.read_preference == ReadPreference.PRIMARY  # reads by id, the reconciler, writes
    job = Job.new(JobSpec(type="echo"))
    assert await store.insert_many([job]) == [None]
    # One member: secondaryPreferred falls back to it, and both reads work.
    listed, _ = await store.list(status=None, type_=None, limit=10, cursor=None)
    assert [found.id for found in listed] == [job.id]
    assert (await store.count_statuses(["pending"], stale_ok=True))["pending"] == 1
    assert (await store.get(job.id)).id == job.id


async def test_the_node_builds_its_store_with_the_configured_read_preference(redis_client, mongo_client,
                                                                            mongo_db_name, key_prefix):
    settings = Settings(mongodb_database=mongo_db_name, redis_key_prefix=key_prefix,
                        mongodb_read_preference="nearest", worker_count=0)
    node = NodeServices.build(settings, redis_client, mongo_client, build_registry(settings))
    assert node.store.listed_jobs.read_preference == ReadPreference.NEAREST
    assert node.store.jobs.read_preference == ReadPreference.PRIMARY
