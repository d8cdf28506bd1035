"""Members join and leave a running cluster through SEEDS: real node processes on loopback.

The join/leave test runs each algorithm under a steady stream of submissions: two nodes join
through a seed (one through the other newcomer), every member comes to list them, one leaves on
POST /api/v1/cluster/leave and the other on SIGTERM, every member stops counting them, and every
acknowledged job completes. For raft the nodes' logs must show no term with two leaders.

The bad-input tests: a node with another CLUSTER_SECRET is refused and logged on both sides and
never listed; a node whose SEEDS answer nothing says so in /health and keeps trying.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import defaultdict
from typing import Any

import pytest

from jobnode.client import AsyncClient, ClientError
from jobnode.dev.embedded import free_port
from tests.cluster_harness import Cluster, start_cluster  # noqa: F401  (the fixture)
from tests.waiting import wait_until

SUBMIT_INTERVAL_S = 0.05
MEMBERSHIP_TIMEOUT_S = 20.0
COMPLETION_TIMEOUT_S = 30.0


class Load:
    """Submits `echo` jobs with idempotency keys to whichever nodes are in `targets`, round robin.

    A submission that fails on one node is sent again, same key, to the next: a job counts as
    acknowledged once some node answered with its id, and a key can never make two jobs.
    """

    def __init__(self, targets: dict[str, AsyncClient]) -> None:
        self.targets = targets
        self.acked: dict[str, str] = {}  # idempotency key -> job id
        self.unacked = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        turn = itertools.count()
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            for _ in range(len(self.targets) + 1):
                names = sorted(self.targets)
                client = self.targets[names[next(turn) % len(names)]]
                try:
                    job = await client.submit("echo", {"key": key}, idempotency_key=key)
                except ClientError:
                    continue
                self.acked[key] = job["id"]
                break
            else:
                self.unacked += 1
            await asyncio.sleep(SUBMIT_INTERVAL_S)  # pacing the load, not waiting for a condition


async def members(client: AsyncClient) -> set[str]:
    """The members a node's election counts (a member that left is listed as left, or not at all)."""
    body = await client.cluster()
    return {m["id"] for m in body["members"] if m["state"] != "left"}


async def all_list(cluster: Cluster, among: list[str], expected: set[str]) -> bool:
    views = await asyncio.gather(*(members(cluster.client(n)) for n in among))
    return all(view == expected for view in views)


def leaders_by_term(cluster: Cluster) -> dict[int, set[str]]:
    named: dict[int, set[str]] = defaultdict(set)
    for node in cluster.nodes.values():
        for event in node.log_events():
            if event.get("event") == "election.leader_changed" and event.get("leader"):
                named[event["term"]].add(event["leader"])
    return named


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ("bully", "raft", "gossip"))
async def test_members_join_and_leave_under_load(start_cluster, algorithm):
    cluster = await start_cluster(algorithm, LEAVE_TIMEOUT="10s")
    founders = list(cluster.nodes)
    await cluster.leader()
    load = Load({n: cluster.client(n) for n in founders})
    generator = asyncio.create_task(load.run())
    try:
        await wait_until(lambda: len(load.acked) >= 10, timeout_s=15, message="jobs were not flowing")
        # node-5 knows only node-4, itself new: it gets in once node-4 is in.
        # Seeds back off to at most 1 s: node-5 starts knocking before node-4 listens.
        await asyncio.gather(cluster.add("node-4", ["node-2"], LEAVE_TIMEOUT="10s", SEED_RETRY_MAX="1s"),
                             cluster.add("node-5", ["node-4"], LEAVE_TIMEOUT="10s", SEED_RETRY_MAX="1s"))
        everyone = {*founders, "node-4", "node-5"}
        await wait_until(lambda: all_list(cluster, sorted(everyone), everyone), timeout_s=MEMBERSHIP_TIMEOUT_S,
                         interval_s=0.2, ignore=(ClientError,), message="not every member listed the newcomers")
        for newcomer in ("node-4", "node-5"):
            health = await cluster.client(newcomer).health()
            assert health["checks"]["seeds"]["ok"] and health["checks"]["seeds"]["joined"], health
            load.targets[newcomer] = cluster.client(newcomer)
        joined_at = len(load.acked)
        await wait_until(lambda: len(load.acked) >= joined_at + 10, timeout_s=15,
                         message="submissions stalled after the join")

        # One leaves on request, the other on SIGTERM; the load stops using them first.
        for leaving in ("node-4", "node-5"):
            del load.targets[leaving]
        answer = await cluster.client("node-4").leave_cluster()
        assert answer["left"] and answer["confirmed"], answer
        cluster.stop("node-5")
        assert await cluster.wait_exit("node-4") == 0
        assert await cluster.wait_exit("node-5") == 0
        assert any(e.get("event") == "election.departed" for e in cluster.nodes["node-5"].log_events()), \
            "node-5 stopped before its departure was confirmed"
        await wait_until(lambda: all_list(cluster, founders, set(founders)), timeout_s=MEMBERSHIP_TIMEOUT_S,
                         interval_s=0.2, ignore=(ClientError,), message="members still count the nodes that left")
        left_at = len(load.acked)
        await wait_until(lambda: len(load.acked) >= left_at + 10, timeout_s=15,
                         message="submissions stalled after the leave")
    finally:
        load.stop.set()
        await generator
    assert load.unacked == 0, f"{load.unacked} submissions found no node to take them"
    leader = await cluster.leader()
    client = cluster.client(leader)

    async def every_job_completed() -> bool:
        jobs = await asyncio.gather(*(client.get(job_id) for job_id in load.acked.values()))
        return all(job["status"] == "completed" for job in jobs)

    await wait_until(every_job_completed, timeout_s=COMPLETION_TIMEOUT_S, interval_s=0.5,
                     message="acknowledged jobs did not all complete")
    if algorithm == "raft":
        named = leaders_by_term(cluster)
        assert named and all(len(ids) == 1 for ids in named.values()), f"two leaders in a term: {dict(named)}"


async def test_a_node_with_another_cluster_secret_is_refused_and_never_listed(start_cluster):
    cluster = await start_cluster("gossip", nodes=1)
    other_secret = uuid.uuid4().hex + uuid.uuid4().hex
    await cluster.add("intruder", ["node-1"], wait=False, CLUSTER_SECRET=other_secret)

    async def refused() -> dict[str, Any] | None:
        seeds = (await cluster.client("intruder").health())["checks"]["seeds"]
        return seeds if "CLUSTER_SECRET" in seeds.get("reason", "") else None

    seeds = await wait_until(refused, timeout_s=MEMBERSHIP_TIMEOUT_S, ignore=(ClientError,),
                             message="the intruder's /health never said why it is not in")
    assert seeds["ok"] is False and seeds["joined"] is False and seeds["answered"] == 0
    assert (await cluster.client("intruder").health())["status"] == "unavailable"
    await wait_until(lambda: any(e.get("event") == "peer.refused_incoming" and e.get("claimed_node") == "intruder"
                                 for e in cluster.nodes["node-1"].log_events()),
                     timeout_s=10, message="node-1 did not log the refusal")
    assert any(e.get("event") == "peer.refused" and e.get("status") == 401
               for e in cluster.nodes["intruder"].log_events()), "the intruder did not log its refusal"
    assert await members(cluster.client("node-1")) == {"node-1"}
    assert "intruder" not in {row["id"] for row in (await cluster.client("node-1").cluster())["members"]}


async def test_seeds_that_answer_nothing_are_retried_and_named_in_health(start_cluster):
    cluster = await start_cluster("raft", nodes=1)
    dead = [f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    node = await cluster.add("lonely", ["node-1"], wait=False, SEEDS=",".join(dead), SEED_RETRY_MAX="1s")

    async def seeds_check() -> dict[str, Any] | None:
        check = (await cluster.client("lonely").health())["checks"]["seeds"]
        return check if check.get("attempts", 0) >= 4 else None

    check = await wait_until(seeds_check, timeout_s=MEMBERSHIP_TIMEOUT_S, ignore=(ClientError,),
                             message="the node did not keep retrying its seeds")
    assert check["ok"] is False and check["configured"] == 2 and check["answered"] == 0
    assert "none of the 2 seeds answered" in check["reason"] and "connection failed" in check["reason"]
    assert all(url not in str(check) for url in dead), "the public health check must not name internal hosts"
    assert node.alive, "unreachable seeds are no reason to exit"
