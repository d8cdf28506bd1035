"""Two of three nodes killed under load, with a client that knows all three.

A producer submits 50 jobs a second with idempotency keys through one `AsyncClient` given every
node's URL; two nodes die by kill -9 mid-load. The client must see no failed submission (it moves
to the survivor), and every acknowledged job must complete.

- gossip: the survivor leads alone and runs everything.
- raft: the survivor keeps accepting, but without a majority nobody is elected and nothing is
  dispatched; /health says so (`quorum`, status `degraded`, still 200) and so does
  /api/v1/cluster. Once one killed node is back, the jobs run.

The figures (submissions, failures, time from the kill until every job completed) are printed
(`-s` shows them) and kept in docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from jobnode.client import AsyncClient, ClientError
from tests.cluster_harness import Cluster, start_cluster  # noqa: F401  (the fixture)
from tests.test_cluster import RunRecorder, get_json, recorder  # noqa: F401  (the fixture)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

RATE_PER_S = 50
HOLD_MS = 20
COMPLETION_TIMEOUT_S = 45.0


@dataclass
class OpenLoad:
    """Submits at a steady rate whatever the answers take: each submission is its own task, so a
    slow one (a node dying under it) does not slow the offered rate."""

    client: AsyncClient
    recorder: RunRecorder
    acked: dict[str, str] = field(default_factory=dict)  # tag -> job id
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[None]] = set()
        next_at = loop.time()
        while not self.stop.is_set():
            self.sent += 1
            task = asyncio.create_task(self._submit(f"job-{self.sent}"))
            pending.add(task)
            task.add_done_callback(pending.discard)
            next_at += 1 / RATE_PER_S
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        if pending:
            await asyncio.gather(*pending)

    async def _submit(self, tag: str) -> None:
        try:
            job = await self.client.submit("http", self.recorder.payload(tag, hold_ms=HOLD_MS), idempotency_key=tag)
            self.acked[tag] = job["id"]
        except ClientError as exc:
            self.failures.append(f"{tag}: {exc}")


async def run_for(load: OpenLoad, seconds: float) -> None:
    """Let the load run on for `seconds` of submissions (counted, not slept: 50 per second)."""
    target = load.sent + int(seconds * RATE_PER_S)
    await wait_until(lambda: load.sent >= target, timeout_s=seconds * 3 + 5, interval_s=0.05,
                     message="the load generator stalled")


def report(**figures: Any) -> None:
    print("two-of-three:", json.dumps(figures, sort_keys=True))


async def test_gossip_two_of_three_killed_under_load_no_submission_fails(start_cluster, recorder):
    cluster = await start_cluster("gossip")
    leader = await cluster.leader()
    survivor = next(n for n in cluster.nodes if n != leader)
    victims = [n for n in cluster.nodes if n != survivor]  # the leader and the other follower
    urls = [cluster.nodes[n].url for n in victims] + [cluster.nodes[survivor].url]  # the doomed ones first
    async with AsyncClient(urls, timeout_s=5.0) as client:
        load = OpenLoad(client, recorder)
        generator = asyncio.create_task(load.run())
        try:
            await run_for(load, 2)
            for node_id in victims:
                cluster.kill(node_id)
            killed_at = time.monotonic()
            sent_at_kill = load.sent
            await run_for(load, 4)
        finally:
            load.stop.set()
            await generator
        assert not load.failures, f"submissions failed at the client: {load.failures[:5]}"
        assert await cluster.leader(among=[survivor]) == survivor
        await wait_until(lambda: all(recorder.finished(tag) for tag in load.acked), timeout_s=COMPLETION_TIMEOUT_S,
                         interval_s=0.1, message="acknowledged jobs did not all run")
        all_ran_s = time.monotonic() - killed_at
        jobs = await client.wait_many(list(load.acked.values()), timeout_s=COMPLETION_TIMEOUT_S, poll_interval_s=0.2)
    not_completed = [(j["id"], j["status"]) for j in jobs if j["status"] != "completed"]
    assert not not_completed, f"acknowledged jobs that did not complete: {not_completed[:5]}"
    assert len(load.acked) == load.sent and load.sent - sent_at_kill >= 4 * RATE_PER_S
    assert not recorder.overlaps(), f"jobs that ran twice at the same time: {recorder.overlaps()}"
    report(algorithm="gossip", submitted=load.sent, acknowledged=len(load.acked), failed=len(load.failures),
           after_kill=load.sent - sent_at_kill, seconds_from_kill_until_all_ran=round(all_ran_s, 2))


async def test_raft_survivor_accepts_but_waits_for_a_majority(start_cluster, recorder):
    cluster = await start_cluster("raft")
    leader = await cluster.leader()
    survivor = next(n for n in cluster.nodes if n != leader)
    victims = [n for n in cluster.nodes if n != survivor]
    urls = [cluster.nodes[n].url for n in victims] + [cluster.nodes[survivor].url]
    health_url = f"{cluster.nodes[survivor].url}/health"
    async with AsyncClient(urls, timeout_s=5.0) as client:
        load = OpenLoad(client, recorder)
        generator = asyncio.create_task(load.run())
        try:
            await run_for(load, 2)
            for node_id in victims:
                cluster.kill(node_id)
            killed_at = time.monotonic()

            async def says_no_majority() -> dict | None:
                body = await get_json(health_url)  # 200: still ready, still accepting
                return body if body["status"] == "degraded" and body["leader_id"] is None else None

            health = await wait_until(says_no_majority, timeout_s=15, interval_s=0.1,
                                      message="the survivor never said it lacks a majority")
            quorum = health["checks"]["quorum"]
            assert (quorum["ok"], quorum["required"], quorum["needed_to_dispatch"]) == (False, False, True)
            assert "accepted" in quorum["reason"]
            assert (await get_json(f"{cluster.nodes[survivor].url}/api/v1/cluster"))["quorum"]["ok"] is False
            # Jobs submitted from now on are accepted and must not run until a majority is back.
            first_waiting = load.sent + 1
            await run_for(load, 2)
            ran_early = [tag for tag in load.acked if int(tag.split("-")[1]) >= first_waiting and recorder.runs.get(tag)]
            restarted_at = time.monotonic()
            await cluster.restart(victims[0])
            await run_for(load, 1)
        finally:
            load.stop.set()
            await generator
        assert not load.failures, f"submissions failed at the client: {load.failures[:5]}"
        assert not ran_early, f"jobs dispatched without a majority: {ran_early[:5]}"
        await wait_until(lambda: all(recorder.finished(tag) for tag in load.acked), timeout_s=COMPLETION_TIMEOUT_S,
                         interval_s=0.1, message="acknowledged jobs did not all run once the majority returned")
        done_s = time.monotonic()
        jobs = await client.wait_many(list(load.acked.values()), timeout_s=COMPLETION_TIMEOUT_S, poll_interval_s=0.2)
    assert all(j["status"] == "completed" for j in jobs)
    assert len(load.acked) == load.sent
    assert not recorder.overlaps(), f"jobs that ran twice at the same time: {recorder.overlaps()}"
    report(algorithm="raft", submitted=load.sent, acknowledged=len(load.acked), failed=len(load.failures),
           seconds_without_majority=round(restarted_at - killed_at, 2),
           seconds_from_restart_until_all_ran=round(done_s - restarted_at, 2))
