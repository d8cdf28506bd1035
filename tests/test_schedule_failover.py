"""A schedule on a 3-node raft cluster whose leader is killed with SIGKILL twice: every fire time
from the first to the last has exactly one job (catch_up all), whoever was firing.

The same cluster keeps `sleep` jobs for 1 s after they end (JOB_RETENTION_BY_TYPE), and at the end
the test waits for the leader's retention sweep (every 2 s here) to remove one: the leader then is
the one elected after the kills.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from jobnode.client import ClientError
from tests.cluster_harness import start_cluster  # noqa: F401  (the fixture)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow
UTC = timezone.utc
FIRES_BETWEEN_KILLS = 3


async def fire_times(mongo_db) -> list[datetime]:
    found = [doc["scheduled_for"] async for doc in mongo_db.jobs.find({"schedule": "tick"}, {"scheduled_for": 1})]
    return sorted(moment.replace(tzinfo=UTC) for moment in found)


async def fired_after(mongo_db, moment: datetime, count: int) -> list[datetime]:
    async def enough():
        later = [t for t in await fire_times(mongo_db) if t > moment]
        return later if len(later) >= count else None

    return await wait_until(enough, timeout_s=30, interval_s=0.2,
                            message=f"the schedule did not fire {count} times after {moment}")


async def around(mongo_db, moment: datetime, span_s: int = 3) -> list[str]:
    """The fire times near `moment`, each with how long after it its job was created."""
    found = []
    async for doc in mongo_db.jobs.find({"schedule": "tick"}, {"scheduled_for": 1, "created_at": 1}):
        fire, created = doc["scheduled_for"].replace(tzinfo=UTC), doc["created_at"].replace(tzinfo=UTC)
        if abs((fire - moment).total_seconds()) <= span_s:
            found.append((fire, f"{fire:%H:%M:%S} +{(created - fire).total_seconds():.1f}s"))
    return [text for _, text in sorted(found)]


async def test_a_schedule_fires_once_per_fire_time_across_two_leader_kills(start_cluster, mongo_db):
    cluster = await start_cluster("raft", nodes=3, JOB_RETENTION_BY_TYPE="sleep=1s", RETENTION_SWEEP_INTERVAL="2s")
    leader = await cluster.leader()
    client = cluster.client(leader)
    expiring = await client.submit("sleep", {"seconds": 0})
    await client.create_schedule({"name": "tick", "every_seconds": 1, "catch_up": "all", "overlap": "allow",
                                  "catch_up_window_seconds": 600, "job": {"type": "echo", "payload": {}}})
    await fired_after(mongo_db, datetime(1970, 1, 1, tzinfo=UTC), FIRES_BETWEEN_KILLS)
    kills = []
    for round_number in range(2):
        kills.append((leader, datetime.now(UTC)))
        cluster.kill(leader)
        others = [node for node in cluster.nodes if node != leader]
        new_leader = await cluster.leader(others, other_than=leader)
        await fired_after(mongo_db, kills[-1][1], FIRES_BETWEEN_KILLS)
        if round_number == 0:
            await cluster.restart(leader)  # raft needs two of three for the second kill's election
        leader, client = new_leader, cluster.client(new_leader)
    await client.set_schedule_paused("tick", True)

    times = await fire_times(mongo_db)
    for killed, at in kills:
        print(f"killed {killed} at {at:%H:%M:%S.%f}: fire times around it {await around(mongo_db, at)}")
    print(f"{len(times)} fire times from {times[0]:%H:%M:%S} to {times[-1]:%H:%M:%S}")
    assert len(times) == len(set(times)), "a fire time has more than one job"
    expected = [times[0] + timedelta(seconds=i) for i in range(int((times[-1] - times[0]).total_seconds()) + 1)]
    assert times == expected, "a fire time between the first and the last has no job"

    # The leader's own sweep (not one the test runs) removes the expired sleep job.
    async def expired():
        try:
            await client.get(expiring["id"])
        except ClientError as exc:
            return getattr(exc, "status", None) == 404
        return False

    started = time.monotonic()
    await wait_until(expired, timeout_s=75, interval_s=0.5, message="the retention sweep never removed the expired job")
    print(f"the retention sweep removed the expired job {time.monotonic() - started:.0f} s after the check began")
