"""Retention: MongoDB's TTL index removes a finished job once its time is up; Redis keeps nothing of it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from jobnode.core.retention import DEFAULT_RETENTION_S, expire_at, retention_s
from jobnode.core.settings import ConfigError, Settings
from jobnode.node import NODE_SERVICES
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
        if sweep:
            await mongo_db.command("secantusAdmin.pruneTtl")
        return (await node.get(f"/api/v1/jobs/{gone['id']}")).status == 404

    await wait_until(removed, timeout_s=timeout_s, message="the expired job was never removed")
    # The job kept forever (retention 0 for its type) is still there. The finished counts are
    # totals of jobs that ended so, kept as they end: an expired record still counted, and
    # nothing scanned to say so (docs/architecture.md, Stats).
    assert (await (await node.get(f"/api/v1/jobs/{kept['id']}")).json())["status"] == "completed"
    assert (await mongo_db.jobs.find_one({"_id": kept["id"]}))["expire_at"] is None
    counts = (await (await node.get("/api/v1/stats")).json())["jobs"]
    assert counts["completed"] == 2 and counts["pending"] == 0 and counts["total"] == 2
    # A new Redis (its counters gone) starts them again from MongoDB's records: the one kept.
    await redis_client.delete(*[f"{key_prefix}:count:{name}" for name in ("completed", "failed", "cancelled")])
    await node.app[NODE_SERVICES].jobs.rebuild_finished_totals()
    assert await redis_client.get(f"{key_prefix}:count:completed") == b"1"


async def test_a_finished_job_expires_through_its_ttl_index_and_redis_forgets_it(start_node, mongo_db, redis_client,
                                                                                 key_prefix):
    # SecantusDB's own sweep, run on demand: the code its TTL monitor runs, without its minute's wait.
    await finished_job_expires(start_node, mongo_db, redis_client, key_prefix, sweep=True, timeout_s=10)

