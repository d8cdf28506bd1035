"""Chaos: Redis and the MongoDB-compatible server restarted, paused, cut off or failing, under load.

The guarantees under test: a submission answered 2xx is durable and completes; while a
data server is out of reach submissions are refused (503), not acknowledged falsely and not
left hanging; workers pause and resume by themselves; MongoDB catches up (batched writes
are retried) once it is back. Each test ends with the history check (tools/chaos/history.py).
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from tools.chaos.recording import monotonic_s
from tools.chaos.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

RATE_PER_S = 15.0
OUTAGE_S = 10.0
# Well under the outage, so requests waiting on MongoDB are answered 503 while it lasts.
MONGODB_TIMEOUT = "3s"


@pytest.mark.parametrize("stop, durability", [("sigterm", "store"), ("sigkill", "store"), ("sigkill", "queue")])
async def test_redis_restarted_from_its_aof_mid_load(private_redis, chaos, stop, durability):
    # SIGTERM: Redis finishes its AOF, then starts from it. SIGKILL: no clean shutdown, but
    # Redis writes its AOF buffer to the file before it replies (the fsync once a second only
    # guards against a machine crash), so every reply a node saw is in the file. With
    # durability `queue` the submissions are acknowledged on that alone, MongoDB getting each
    # job later through the outbox: the kill must still lose none, and every one must end up
    # in MongoDB, completed (the history check reads the end state there).
    await chaos.use(redis_url=private_redis.url)
    await chaos.start("raft", DURABILITY=durability)
    chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200, fail_every=10)
    await chaos.wait_runs(15)
    start = monotonic_s()
    await asyncio.to_thread(private_redis.stop if stop == "sigterm" else private_redis.kill)
    await asyncio.to_thread(private_redis.start)
    chaos.faults.blackout(f"redis_restart_{stop}", start, monotonic_s())
    await chaos.wait_runs(15)
    await chaos.wait_acked(20)
    await chaos.finish()
    stored = await chaos.db.jobs.count_documents({"durability": durability})
    assert stored >= 20 and await chaos.db.jobs.count_documents({}) == stored  # each job took that path


async def test_mongodb_killed_and_restarted_mid_load(private_mongo, chaos):
    # Acknowledged writes are journaled: SIGKILL of the store must take none back, neither a
    # submission's insert nor an outbox commit. Writes refused or timed out while it is down
    # were never acknowledged.
    await chaos.use(mongo_url=private_mongo.url)
    await chaos.start("raft", MONGODB_TIMEOUT=MONGODB_TIMEOUT)
    load = chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200)
    await chaos.wait_runs(15)
    acked_before = len(load.acked)
    await asyncio.to_thread(private_mongo.kill)
    chaos.faults.note("mongodb_sigkill")
    await asyncio.to_thread(private_mongo.start)
    chaos.faults.note("mongodb_restarted")
    await chaos.wait_runs(15)
    await chaos.wait_acked(20)
    assert len(load.acked) > acked_before
    report = await chaos.finish()
    # No job is told to fail and no worker dies, so each runs once. A second run means a
    # finished job's record went back to unfinished in the store after Redis forgot it: a
    # commit the store had acknowledged but not made durable.
    assert report.jobs_run_more_than_once == 0, "a finished job ran again after the store restarted"


async def test_redis_unreachable_for_ten_seconds(chaos, redis_server):
    proxy = await TcpProxy(redis_server.port, name="redis-gate").start()
    try:
        await chaos.start("bully", redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        load = chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200)
        await chaos.wait_runs(15)
        acked_before = len(load.acked)
        start = monotonic_s()
        proxy.cut()
        await asyncio.sleep(OUTAGE_S)  # the outage's length, not a synchronisation
        proxy.heal()
        chaos.faults.blackout("redis_unreachable", start, monotonic_s())
        refused_during = load.refused["503"]
        assert refused_during > 0, f"no submission was refused while Redis was cut off: {dict(load.refused)}"
        # Workers resume by themselves: new runs finish after the outage.
        await chaos.wait_runs(15)
        assert len(load.acked) > acked_before
        await chaos.finish()
    finally:
        await proxy.close()


async def test_mongodb_paused_for_ten_seconds(private_mongo, chaos):
    await chaos.use(mongo_url=private_mongo.url)
    await chaos.start("raft", MONGODB_TIMEOUT=MONGODB_TIMEOUT)
    load = chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200)
    await chaos.wait_runs(15)
    os.kill(private_mongo.pid, signal.SIGSTOP)
    chaos.faults.note("mongodb_sigstop")
    try:
        await asyncio.sleep(OUTAGE_S)  # the outage's length, not a synchronisation
    finally:
        os.kill(private_mongo.pid, signal.SIGCONT)
        chaos.faults.note("mongodb_sigcont")
    # Submissions waiting on the paused server are answered 503 after MONGODB_TIMEOUT or
    # time out at the client; neither is an acknowledgement, and the check proves every
    # acknowledged job durable and completed.
    assert load.refused, "every submission was acknowledged while MongoDB was paused"
    await chaos.wait_runs(15)
    await chaos.finish()


async def test_mongodb_failing_commands_for_ten_seconds(chaos):
    await chaos.start("gossip", MONGODB_TIMEOUT=MONGODB_TIMEOUT)
    load = chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200)
    await chaos.wait_runs(15)
    # A short burst (the next 5 writes fail), then every write fails with ShutdownInProgress,
    # then connections are closed mid-command.
    await chaos.fail_mongo({"times": 5}, errorCode=91, failCommands=["insert", "update"])
    await chaos.wait_acked(5)
    await chaos.fail_mongo(errorCode=91, failCommands=["insert", "update", "delete", "find"])
    chaos.faults.note("mongodb_failcommand", error_code=91)
    await asyncio.sleep(OUTAGE_S / 2)  # the outage's length, not a synchronisation
    await chaos.fail_mongo(closeConnection=True, failCommands=["insert", "update"])
    chaos.faults.note("mongodb_failcommand", close_connection=True)
    await asyncio.sleep(OUTAGE_S / 2)
    await chaos.heal_mongo()
    chaos.faults.note("mongodb_healed")
    assert load.refused["503"] > 0, f"no submission was refused while MongoDB failed: {dict(load.refused)}"
    await chaos.wait_runs(15)
    await chaos.finish()
