"""Chaos: node processes killed, paused and cut off under steady load, checked by tools/chaos/history.py.

Each test starts 3 real node processes on loopback, submits `history` jobs at a steady rate
through the nodes that are up, injects one kind of fault, and ends with the history check
(every acknowledged job finished as expected, no two runs at once under valid leases,
states only forward, MongoDB and Redis agree). Loads are modest: CI runs all of this on 2
cores next to other work.
"""

from __future__ import annotations

import asyncio

import pytest

from jobnode.core.errors import NotLeader
from jobnode.storage.redis.queue import JobQueue
from tests.chaos.conftest import ChaosRun
from tools.chaos.history import read_runs
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

RATE_PER_S = 15.0


def running_on(chaos: ChaosRun, node_id: str) -> bool:
    """Is a run on `node_id` in progress right now, by the record?"""
    return any(r.node == node_id and r.end is None for runs in read_runs(chaos.record_dir).values() for r in runs)


async def test_follower_killed_mid_job(chaos):
    cluster = await chaos.start("bully")
    leader = await cluster.leader()
    victim = next(n for n in cluster.nodes if n != leader)
    chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=300, fail_every=10)
    await chaos.wait_runs(10)
    await wait_until(lambda: running_on(chaos, victim), timeout_s=30, message=f"{victim} never ran a job")
    chaos.kill(victim)
    await chaos.wait_acked(40)
    report = await chaos.finish()
    assert report.jobs_run_more_than_once >= 1  # the victim's job ran again elsewhere


async def test_leader_killed_three_times_in_a_row(chaos):
    cluster = await chaos.start("raft")
    chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=100)
    await chaos.wait_runs(10)
    for _ in range(3):
        leader = await cluster.leader()
        chaos.kill(leader)
        await cluster.leader(other_than=leader)
        await chaos.wait_acked(15)
        await cluster.restart(leader)
    await chaos.wait_runs(10)
    await chaos.finish()


async def test_paused_leader_is_fenced_when_it_wakes(chaos, redis_client):
    cluster = await chaos.start("raft")
    old = await cluster.leader()
    old_token = (await cluster.leader_view(old))["lease"]["fencing_token"]
    chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200)
    await chaos.wait_runs(10)
    # Longer than the job lease (3s) and the worker TTL, so its jobs are taken over while it sleeps.
    paused = asyncio.create_task(chaos.pause(old, seconds=chaos.timing.ttl_s + 2.0))
    await cluster.leader(among=[n for n in cluster.nodes if n != old], other_than=old)
    await paused
    # Awake again, the old leader's token is dead: Redis refuses its dispatch, and it notices.
    with pytest.raises(NotLeader):
        await JobQueue(redis_client, chaos.prefix).dispatch(old, old_token, max_jobs=1, strategy="round_robin",
                                                            lease_ms=3000, share_every=0)
    assert int(await redis_client.get(f"{chaos.prefix}:fence")) > old_token  # the new leader took a new token

    def knows_it_lost() -> bool:
        events = cluster.nodes[old].log_events()
        return any(e.get("event") == "leadership.lost" or (e.get("event") == "leadership.changed"
                                                           and e.get("token") is None) for e in events)

    await wait_until(knows_it_lost, timeout_s=15, message=f"{old} never noticed it lost the lease")
    await chaos.wait_acked(20)
    await chaos.finish()


async def test_partition_isolating_the_leader(chaos):
    cluster = await chaos.start("gossip")
    old = await cluster.leader()
    others = [n for n in cluster.nodes if n != old]
    chaos.start_load(rate_per_s=RATE_PER_S, hold_ms=200)
    await chaos.wait_runs(10)
    cluster.isolate(old)
    chaos.faults.note("partition", isolated=old)
    await cluster.leader(among=others, other_than=old, with_lease=False)
    await chaos.wait_acked(30)
    cluster.heal()
    chaos.faults.note("heal")
    await cluster.leader()
    await chaos.wait_acked(15)
    await chaos.finish()
