"""Redis under Sentinel: the primary is killed (kill -9) under load and a replica takes over.

A primary, one replica and three sentinels (down-after 1 s) on loopback; three raft nodes reach
Redis through REDIS_SENTINELS. Replication is asynchronous, so the promoted replica may lack the
primary's last writes: the reconciler queues jobs whose enqueue was lost, and the fencing token
cannot go back because each new lease holder draws its floor from MongoDB
(tests/test_replicated_stores.py checks that step by step). The history checker must find no
acknowledged job lost and no overlapping runs under a valid lease.

Measured and printed (`-s`): the sentinels' failover time (kill until they name the new primary)
and the time until dispatch resumed (kill until the first run of a job acknowledged after the
promotion began). The goal is failover + 2 s; the assertion allows far more, so a loaded machine
does not fail it, and docs/scaling.md keeps the measured figure.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio.sentinel import Sentinel

from tests.chaos.sentinel_set import MASTER_NAME, SentinelSet, missing_binaries
from tests.waiting import wait_until
from tools.chaos.history import read_runs
from tools.chaos.recording import monotonic_s

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(missing_binaries()), reason=f"Debian's {' and '.join(missing_binaries())} not on PATH "
                       "(.ci/run installs the redis-sentinel package; apt-get install redis-sentinel)"),
]

RATE_PER_S = 20.0
# The goal is failover + 2 s; this is the bound the test enforces, generous for a busy 2-core machine.
RESUME_BOUND_S = 15.0


async def fencing_token(chaos) -> int:
    """The lease holder's token, as the current primary has it (waiting for a holder)."""
    async def held() -> int | None:
        raw = await chaos.redis.get(f"{chaos.prefix}:leader")
        return int(raw.decode().rpartition(" ")[2]) if raw else None

    return await wait_until(held, timeout_s=30, interval_s=0.05, ignore=(Exception,), message="nobody holds the lease")


@pytest.fixture
async def sentinel_set(tmp_path) -> AsyncIterator[SentinelSet]:
    redis_set = SentinelSet(tmp_path / "sentinel-set")
    try:
        await asyncio.to_thread(redis_set.start)
        yield redis_set
    finally:
        await asyncio.to_thread(redis_set.close)


async def test_primary_killed_under_load_fails_over_with_nothing_lost(sentinel_set, chaos):
    # The checker's own view of Redis follows the primary the same way the nodes do.
    await chaos.use(redis_url=f"redis://127.0.0.1:{sentinel_set.primary_port}")
    await chaos.redis.aclose()
    watcher_sentinel = Sentinel([("127.0.0.1", port) for port in sentinel_set.sentinel_ports],
                                sentinel_kwargs={"socket_timeout": 1})
    chaos.redis = watcher_sentinel.master_for(MASTER_NAME, socket_timeout=5)
    try:
        await chaos.start("raft", REDIS_SENTINELS=sentinel_set.sentinels, REDIS_SENTINEL_MASTER=MASTER_NAME)
        load = chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200, fail_every=10)
        await chaos.wait_runs(20)
        assert await asyncio.to_thread(sentinel_set.primary_address) == ("127.0.0.1", sentinel_set.primary_port)
        token_before = await fencing_token(chaos)
        killed_at = monotonic_s()
        await asyncio.to_thread(sentinel_set.kill_primary)
        chaos.faults.note("redis_primary_sigkill")

        async def promoted() -> bool:
            return await asyncio.to_thread(sentinel_set.primary_address) == ("127.0.0.1", sentinel_set.replica_port)

        await wait_until(promoted, timeout_s=30, interval_s=0.05, message="the sentinels never promoted the replica")
        failover_s = monotonic_s() - killed_at
        # Jobs acknowledged from now on were queued on the new primary: their first run is dispatch at work.
        acked_before = set(load.acked)

        def first_new_run() -> float | None:
            starts = [run.start for job, runs in read_runs(chaos.record_dir).items() if job not in acked_before
                      for run in runs]
            return min(starts) if starts else None

        resumed_at = await wait_until(first_new_run, timeout_s=60, interval_s=0.05,
                                      message="dispatch never resumed after the failover")
        resume_s = resumed_at - killed_at
        # While Redis had no primary, nobody could renew a job lease.
        chaos.faults.blackout("redis_failover", killed_at, resumed_at)
        token_after = await fencing_token(chaos)
        assert token_after >= token_before, f"the fencing token went back from {token_before} to {token_after}"
        await chaos.wait_runs(20)
        await chaos.wait_acked(20)
        report = await chaos.finish()
    finally:
        for sentinel in watcher_sentinel.sentinels:
            await sentinel.aclose()
    figures = {"token_before": token_before, "token_after": token_after, "failover_s": round(failover_s, 2), "dispatch_resumed_s": round(resume_s, 2),
               "goal_s": round(failover_s + 2, 2), "acknowledged": len(chaos.acked),
               "refused": dict(load.refused), "checker": report.summary()}
    print("sentinel failover:", json.dumps(figures))
    assert resume_s <= failover_s + RESUME_BOUND_S, figures
