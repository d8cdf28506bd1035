"""Flow limits: rate, concurrency, pause per queue, type and user, applied by the leader's dispatch."""

from __future__ import annotations

from datetime import datetime

import pytest

from jobnode.core.flow_limits import FlowLimit, Rate, parse_flow_limits
from jobnode.core.job import Job, JobSpec
from jobnode.storage.redis.flow_limits import FlowLimitStore
from jobnode.storage.redis.queue import Report
from tests.harness import start_node  # noqa: F401  (a fixture)
from tests.waiting import wait_until

LEASE_MS = 60_000


# --- the configuration form ---


def test_flow_limits_text_reads_every_scope_and_refuses_what_it_cannot_mean():
    limits = parse_flow_limits("queue:media rate=5/s concurrency=2; type:email rate=100/min; user:* concurrency=4;"
                               " queue:bulk paused")
    assert limits == (FlowLimit("queue", "media", Rate(5, "second"), 2), FlowLimit("type", "email", Rate(100, "minute")),
                      FlowLimit("user", "*", None, 4), FlowLimit("queue", "bulk", paused=True))
    for bad, says in [("queue:media rate=0/s", "rate.count"), ("queue:media concurrency=-1", "concurrency=-1"),
                      ("queue:media rate=5000/s", "1000"), ("queue:Media rate=1/s", "queue name"),
                      ("shelf:x rate=1/s", "scope"), ("queue:media", "sets no"),
                      ("queue:a rate=1/s; queue:a concurrency=1", "twice")]:
        with pytest.raises(ValueError, match=says):
            parse_flow_limits(bad)


# --- dispatch under limits (the scripts directly) ---


async def dispatch(queue, token):
    return await queue.dispatch("leader", token, max_jobs=100, strategy="round_robin", lease_ms=LEASE_MS,
                                share_every=0)


async def holding(queue, workers):
    found = []
    for worker in workers:
        found += [raw.decode() for raw in await queue.redis.smembers(queue.key("wjobs", worker))]
    return found


async def test_a_user_cap_holds_one_users_jobs_back_and_lets_others_pass(queue, token):
    limits = FlowLimitStore(queue.redis, queue.prefix)
    await limits.put(FlowLimit("user", "*", concurrency=2))
    await queue.register("node-a", 100, ["w1"], queues=["default"], types=None)
    heavy = [Job.new(JobSpec(type="echo"), submitted_by="batch") for _ in range(10)]
    light = [Job.new(JobSpec(type="echo"), submitted_by="alice")]
    await queue.enqueue(heavy + light)
    assert (await dispatch(queue, token)).assigned == 3
    held = set(await holding(queue, ["w1"]))
    assert held == {heavy[0].id, heavy[1].id, light[0].id}
    assert (await dispatch(queue, token)).assigned == 0
    rows = {row.key: (row, usage) for row, usage in zip(await limits.all(), (await limits.usage(["user:*"])).values())}
    assert rows["user:*"][1] == (3, 8)  # every capped user's running jobs, and the waiting ones
    # One of the batch's jobs ends: exactly one more of them goes.
    taken = await queue.take("w1", LEASE_MS)
    while taken.id != heavy[0].id:
        taken = await queue.take("w1", LEASE_MS)
    await queue.finish_many([Report("w1", heavy[0].id, "completed", b"null")])
    assert (await dispatch(queue, token)).assigned == 1
    assert heavy[2].id in await holding(queue, ["w1"])


async def test_a_paused_queue_keeps_its_jobs_pending_until_resumed(queue, token):
    limits = FlowLimitStore(queue.redis, queue.prefix)
    await limits.put(FlowLimit("queue", "default", paused=True))
    await queue.register("node-a", 100, ["w1"], queues=["default"], types=None)
    jobs = [Job.new(JobSpec(type="echo")) for _ in range(3)]
    await queue.enqueue(jobs)
    assert (await dispatch(queue, token)).assigned == 0
    assert (await limits.usage(["queue:default"]))["queue:default"] == (0, 3)
    await limits.put(FlowLimit("queue", "default", concurrency=2))
    assert (await dispatch(queue, token)).assigned == 2
    # A cancel gives the place back like a finish does.
    await queue.cancel(jobs[0].id)
    assert (await dispatch(queue, token)).assigned == 1
    assert (await limits.usage(["queue:default"]))["queue:default"][0] == 2


async def test_a_rate_spaces_dispatches_and_says_when_the_next_may_go(queue, token):
    limits = FlowLimitStore(queue.redis, queue.prefix)
    await limits.put(FlowLimit("type", "echo", Rate(10, "second")))
    await queue.register("node-a", 100, ["w1"], queues=["default"], types=None)
    await queue.enqueue([Job.new(JobSpec(type="echo")) for _ in range(3)])
    first = await dispatch(queue, token)
    assert first.assigned == 1 and 0 < first.rate_wait_ms <= 100
    again = await dispatch(queue, token)
    assert again.assigned == 0 and 0 < again.rate_wait_ms <= 100


# --- the API and a node's dispatcher ---


def started_and_finished(jobs):
    return sorted((datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"])) for j in jobs)


async def submit(client, n, **fields):
    resp = await client.post("/api/v1/jobs/batch", json={"jobs": [fields for _ in range(n)]})
    assert resp.status == 201, await resp.text()
    return [job["id"] for job in (await resp.json())["jobs"]]


async def finished(client, ids, timeout_s):
    async def check():
        jobs = [await (await client.get(f"/api/v1/jobs/{job_id}")).json() for job_id in ids]
        return jobs if all(job["status"] == "completed" for job in jobs) else None

    return await wait_until(check, timeout_s=timeout_s, message="limited jobs did not all complete")


async def test_limits_api_refuses_bad_limits_and_concurrency_two_is_never_exceeded(start_node):
    node = await start_node(WORKER_COUNT="6")
    for path, body, field in [("/api/v1/limits/queue/default", {"concurrency": -1}, "concurrency"),
                              ("/api/v1/limits/queue/default", {"rate": {"count": 10**9, "per": "second"}},
                               "rate.count"),
                              ("/api/v1/limits/queue/default", {"rate": {"count": 5, "per": "hour"}}, "rate.per"),
                              ("/api/v1/limits/shelf/default", {"concurrency": 1}, "scope"),
                              ("/api/v1/limits/queue/Bad Name", {"concurrency": 1}, "name")]:
        resp = await node.put(path, json=body)
        assert resp.status == 400, (path, body)
        assert field in await resp.text()
    resp = await node.put("/api/v1/limits/type/sleep", json={"concurrency": 2, "rate": None})
    assert resp.status == 200
    assert await resp.json() == {"scope": "type", "name": "sleep", "rate": None, "concurrency": 2,
                                 "paused": False, "running": 0, "waiting": 0}
    ids = await submit(node, 8, type="sleep", payload={"seconds": 0.3})
    jobs = await finished(node, ids, timeout_s=30)
    spans = started_and_finished(jobs)
    most = max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans)
    assert most == 2, spans
    listed = await (await node.get("/api/v1/limits")).json()
    assert listed["limits"][0]["running"] == 0
    assert (await node.delete("/api/v1/limits/type/sleep")).status == 204
    assert (await node.get("/api/v1/limits/type/sleep")).status == 404


@pytest.mark.slow
async def test_a_rate_of_five_per_second_spreads_thirty_starts_over_five_seconds(start_node):
    node = await start_node(WORKER_COUNT="8", FLOW_LIMITS="queue:default rate=5/s")
    limit = await (await node.get("/api/v1/limits/queue/default")).json()
    assert limit["rate"] == {"count": 5, "per": "second"}
    ids = await submit(node, 30, type="echo", payload={})

    async def held_back():
        limited = (await (await node.get("/api/v1/stats")).json())["queue"]["limited"]
        return limited if limited and limited[0]["name"] == "default" and limited[0]["waiting"] > 0 else None

    await wait_until(held_back, timeout_s=10, message="the stats never showed jobs waiting on the rate")
    jobs = await finished(node, ids, timeout_s=60)
    starts = [s for s, _ in started_and_finished(jobs)]
    assert (starts[-1] - starts[0]).total_seconds() >= 5.0
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:])]
    assert min(gaps) >= 0.15, gaps  # evenly spaced: no two within most of an interval
