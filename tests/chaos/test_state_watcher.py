"""The chaos state watcher against a real SecantusDB: it reads what the checker needs, and a store
that does not answer costs it a skipped sample, never a hang or a read left running there."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from jobnode.dev.embedded import EmbeddedMongo
from tools.chaos import history
from tools.chaos.history import StateWatcher


@pytest.fixture
def private_mongo(tmp_path: Path):
    mongo = EmbeddedMongo(tmp_path / "mongodb").start()
    yield mongo
    os.kill(mongo.pid, signal.SIGCONT)
    mongo.stop()


@pytest.mark.timeout(60)
async def test_a_paused_store_costs_a_skipped_sample_and_samples_resume_after(private_mongo, redis_server,
                                                                              key_prefix, monkeypatch):
    monkeypatch.setattr(history, "SAMPLE_TIMEOUT_S", 0.5)
    mongo = AsyncMongoClient(private_mongo.url, serverSelectionTimeoutMS=5_000)
    redis = aioredis.Redis.from_url(redis_server.url, socket_timeout=5)
    try:
        ids = [str(uuid.uuid4()) for _ in range(50)]
        await mongo.chaos.jobs.insert_many([{"_id": i, "status": "completed", "rev": 3} for i in ids]
                                           + [{"_id": "not-acknowledged", "status": "pending", "rev": 0}])
        watcher = StateWatcher(mongo.chaos, redis, key_prefix, dict.fromkeys(ids, "completed"))
        await watcher.sample_once()
        assert sorted(watcher.samples) == sorted(ids)  # every acknowledged job, and only those
        assert all(s[0].status == "completed" and s[0].rev == 3 for s in watcher.samples.values())
        os.kill(private_mongo.pid, signal.SIGSTOP)
        await watcher.sample_once()  # returns: the read is given up (the Redis half found nothing)
        assert watcher.skipped == 1
        os.kill(private_mongo.pid, signal.SIGCONT)
        await watcher.sample_once()
        assert all(len(s) == 2 for s in watcher.samples.values())
    finally:
        await redis.aclose()
        await mongo.close()
