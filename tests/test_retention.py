"""Retention: the leader's sweep removes a finished job once its time is up; Redis keeps nothing of it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from pymongo import ASCENDING, IndexModel

from jobnode.core.retention import DEFAULT_RETENTION_S, expire_at, retention_s
from jobnode.core.settings import ConfigError, Settings
from jobnode.node import NODE_SERVICES
from jobnode.pipeline.retention import RetentionSweep
from jobnode.storage.mongo.cluster import METRICS_TTL_S, ClusterStore
from jobnode.storage.mongo.indexes import drop_replaced
from jobnode.storage.mongo.jobs import JobStore
from tests.harness import start_node  # noqa: F401  (a fixture)
from tests.waiting import wait_until


def test_retention_is_per_status_with_per_type_overrides_and_zero_keeps_forever():
    by_status = {**DEFAULT_RETENTION_S, "completed": 60.0, "cancelled": 0.0}
    by_type = {"report": 90 * 86400.0}
    end = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert expire_at(end, "completed", "echo", by_status, by_type) == end + timedelta(seconds=60)
    assert expire_at(end, "cancelled", "echo", by_status, by_type) is None
    assert retention_s("failed", "echo", by_status, by_type) == 30 * 86400
    assert retention_s("completed", "report", by_status, by_type) == 90 * 86400
    settings = Settings.from_env({"JOB_RETENTION": "completed=1d,failed=0", "JOB_RETENTION_BY_TYPE": "echo=90m"},
                                 env_file=None)
    assert settings.job_retention_s == {"completed": 86400.0, "failed": 0.0, "cancelled": 7 * 86400.0}
    assert settings.job_retention_by_type_s == {"echo": 5400.0}
    for bad in ("running=1d", "completed", "completed=-1s", "completed=1d,completed=2d"):
        with pytest.raises(ConfigError, match="JOB_RETENTION"):
            Settings.from_env({"JOB_RETENTION": bad}, env_file=None)


async def finished_job_expires(start_node, mongo_db, redis_client, key_prefix, *, sweep, timeout_s):
    node = await start_node(JOB_RETENTION="completed=1s", JOB_RETENTION_BY_TYPE="sleep=0")
    kept = await (await node.post("/api/v1/jobs", json={"type": "sleep", "payload": {"seconds": 0}})).json()
    gone = await (await node.post("/api/v1/jobs", json={"type": "echo", "payload": {"n": 1}})).json()

    async def stored():
        doc = await mongo_db.jobs.find_one({"_id": gone["id"]})
        return doc if doc and doc["status"] == "completed" else None

    doc = await wait_until(stored, timeout_s=20, message="the job never completed in MongoDB")
    assert doc["expire_at"] is not None

    async def forgotten():  # the outbox drops a finished job from Redis once MongoDB holds it
        return not await redis_client.exists(f"{key_prefix}:job:{gone['id']}")

    await wait_until(forgotten, timeout_s=10, message="Redis still holds the finished job")

    async def removed():
        if sweep:  # the leader's sweep, run now instead of after RETENTION_SWEEP_INTERVAL
            await node.app[NODE_SERVICES].retention.run_once()
        return (await node.get(f"/api/v1/jobs/{gone['id']}")).status == 404

    await wait_until(removed, timeout_s=timeout_s, message="the expired job was never removed")
    # The job kept forever (retention 0 for its type) is still there. The finished counts are
    # totals of jobs that ended so, kept as they end: an expired record still counted, and
    # nothing scanned to say so (docs/architecture.md, Stats).
    assert (await (await node.get(f"/api/v1/jobs/{kept['id']}")).json())["status"] == "completed"
    assert "expire_at" not in await mongo_db.jobs.find_one({"_id": kept["id"]})  # not null: out of the index
    counts = (await (await node.get("/api/v1/stats")).json())["jobs"]
    assert counts["completed"] == 2 and counts["pending"] == 0 and counts["total"] == 2
    # A new Redis (its counters gone) starts them again from MongoDB's records: the one kept.
    await redis_client.delete(*[f"{key_prefix}:count:{name}" for name in ("completed", "failed", "cancelled")])
    await node.app[NODE_SERVICES].jobs.rebuild_finished_totals()
    assert await redis_client.get(f"{key_prefix}:count:completed") == b"1"


async def test_a_finished_job_expires_through_the_retention_sweep_and_redis_forgets_it(start_node, mongo_db,
                                                                                       redis_client, key_prefix):
    await finished_job_expires(start_node, mongo_db, redis_client, key_prefix, sweep=True, timeout_s=10)



async def test_the_sweep_deletes_only_expired_records_in_bounded_steps(mongo_db):
    store = JobStore(mongo_db)
    await store.ensure_indexes()
    now = datetime.now(timezone.utc)
    expired = [{"_id": f"old-{n}", "status": "completed", "expire_at": now - timedelta(minutes=n + 1)} for n in range(7)]
    later = [{"_id": "later", "status": "completed", "expire_at": now + timedelta(hours=1)}]
    forever = [{"_id": "forever", "status": "completed"}, {"_id": "running", "status": "running"}]
    await mongo_db.jobs.insert_many(expired + later + forever)

    assert await store.delete_expired(now, batch=3) == 3  # the three that expired first
    assert {doc["_id"] async for doc in mongo_db.jobs.find({"_id": {"$regex": "^old-"}})} == {
        "old-0", "old-1", "old-2", "old-3"}
    sweep = RetentionSweep(store, batch=3)
    assert await sweep.run_once() == 4 and sweep.deleted == 4  # steps of 3 until one comes back short
    assert sorted([doc["_id"] async for doc in mongo_db.jobs.find({})]) == ["forever", "later", "running"]
    assert await sweep.run_once() == 0


async def test_indexes_replace_the_ttl_index_and_clear_null_expiries(mongo_db):
    # A collection as earlier versions left it: a TTL index, and nulls in unfinished records.
    await mongo_db.jobs.create_indexes([IndexModel([("expire_at", ASCENDING)], name="expire_at", expireAfterSeconds=0,
                                                   partialFilterExpression={"expire_at": {"$type": "date"}})])
    finished_at = datetime.now(timezone.utc) + timedelta(days=1)
    await mongo_db.jobs.insert_many([{"_id": "a", "status": "running", "expire_at": None},
                                     {"_id": "b", "status": "completed", "expire_at": finished_at}])
    await JobStore(mongo_db).ensure_indexes()
    indexes = await mongo_db.jobs.index_information()
    assert "expire_at" not in indexes
    assert indexes["expiry"]["sparse"] is True and "expireAfterSeconds" not in indexes["expiry"]
    assert "expire_at" not in await mongo_db.jobs.find_one({"_id": "a"})
    assert (await mongo_db.jobs.find_one({"_id": "b"}))["expire_at"] is not None
    await JobStore(mongo_db).ensure_indexes()  # a second start changes nothing


async def test_an_old_index_another_starting_node_dropped_first_is_no_error(mongo_db):
    await mongo_db.jobs.create_indexes([IndexModel([("expire_at", ASCENDING)], name="expire_at")])
    existing = await mongo_db.jobs.index_information()
    await mongo_db.jobs.drop_index("expire_at")  # the other node was quicker
    await drop_replaced(mongo_db.jobs, ["expire_at"], existing)
    assert "expire_at" not in await mongo_db.jobs.index_information()


async def test_the_sweep_deletes_metric_snapshots_older_than_a_week_and_replaces_their_ttl_index(mongo_db):
    await mongo_db.metrics.create_indexes([IndexModel([("at", ASCENDING)], name="at_ttl", expireAfterSeconds=60)])
    cluster_store = ClusterStore(mongo_db)
    await cluster_store.ensure_indexes()
    indexes = await mongo_db.metrics.index_information()
    assert "at_ttl" not in indexes and "expireAfterSeconds" not in indexes["at"]
    now = datetime.now(timezone.utc)
    await mongo_db.metrics.insert_many([{"at": now - timedelta(seconds=METRICS_TTL_S + 60), "node_id": "old"},
                                        {"at": now - timedelta(seconds=METRICS_TTL_S - 60), "node_id": "recent"}])
    store = JobStore(mongo_db)
    await store.ensure_indexes()
    await RetentionSweep(store, cluster_store).run_once()
    assert [doc["node_id"] async for doc in mongo_db.metrics.find({})] == ["recent"]
