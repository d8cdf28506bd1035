"""The event stream across node processes: a job whose node is killed with kill -9 still ends
with its terminal event, seen by a subscriber on another node, and `Client.wait` follows it."""

from __future__ import annotations

import asyncio

import pytest

from tests.cluster_harness import start_cluster  # noqa: F401  (the fixture)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


async def test_a_job_on_a_killed_node_still_produces_its_terminal_event(start_cluster):
    cluster = await start_cluster("raft")
    leader = await cluster.leader()
    victim = next(n for n in cluster.nodes if n != leader)
    watcher = next(n for n in cluster.nodes if n not in (leader, victim))
    # Submitted to the victim: a job submitted while one of a node's workers is idle starts on
    # that node (local start), so the victim runs some whatever the leader's strategy.
    client = cluster.client(victim)
    events: list[dict] = []
    subscribed = asyncio.Event()

    async def watch() -> None:
        async for event in cluster.client(watcher).events(event="job."):
            subscribed.set()
            events.append(event)

    watching = asyncio.create_task(watch())
    try:
        # The watcher's stream is open once it has seen a job event: submit until it has.
        ids = [(await client.submit("sleep", {"seconds": 2.0}))["id"] for _ in range(6)]
        await asyncio.wait_for(subscribed.wait(), timeout=20)

        def started_on_victim() -> list[str]:
            return [e["data"]["job"] for e in events
                    if e["event"] == "job.started" and e["data"].get("node") == victim]

        on_victim = await wait_until(started_on_victim, timeout_s=20, message=f"no job started on {victim}")
        cluster.kill(victim)
        finished = await asyncio.gather(*(cluster.client(watcher).wait(job_id, timeout_s=60) for job_id in ids))
        assert {job["status"] for job in finished} == {"completed"}

        def terminal_events() -> set[str]:
            return {e["data"]["job"] for e in events if e["event"] == "job.completed"}

        await wait_until(lambda: set(ids) <= terminal_events(), timeout_s=20,
                         message="every job's terminal event reached the watcher")
        for job_id in on_victim:
            names = [e["event"] for e in events if e["data"].get("job") == job_id]
            # Cut off on the dead node: the attempt fails, the job runs again and completes.
            assert names[-1] == "job.completed", names
            assert "job.failed" in names and "job.retrying" in names, names
            assert names.count("job.started") >= 2, names
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
