"""Local start: a job submitted while one of the node's workers is idle starts on it in the enqueue itself.

enqueue.lua decides (driven directly here: when it may start a job, and when it must leave it
to the leader's dispatch), the worker pool runs what it started, and a node does it for a
submission through its API.
"""

from __future__ import annotations

import asyncio


from jobnode.core.flow_limits import FlowLimit
from jobnode.core.job import Job, JobSpec
from jobnode.core.queues import WorkerGroup
from jobnode.pipeline.workers import PoolSettings, WorkerPool
from jobnode.storage.redis.flow_limits import FlowLimitStore
from jobnode.storage.redis.lease import LeaderLease
from jobnode.storage.redis.queue import JobQueue
from tests.harness import registry_with, start_node  # noqa: F401  (fixture)
from tests.test_metrics import scrape, start_with_metrics, value
from tests.waiting import wait_until

LEASE_MS = 60_000


def job(priority: int = 5, job_type: str = "echo", queue_name: str = "default", **kw) -> Job:
    return Job.new(JobSpec(type=job_type, priority=priority, payload=kw, queue=queue_name))


async def offer(queue: JobQueue, jobs: list[Job], *idle: str):
    return await queue.enqueue_or_start(jobs, idle_workers=list(idle), lease_ms=LEASE_MS)


async def started_pool(queue: JobQueue, registry, *, workers: int) -> WorkerPool:
    """A running pool of node-a: `workers` workers of the default queue, prefetch of 2 each."""
    settings = PoolSettings(node_id="node-a", groups=[WorkerGroup(("default",), workers)], capacity=2,
                            lease_ttl_s=60, heartbeat_interval_s=0.2)
    pool = WorkerPool(settings, queue, registry)
    await pool.start()
    return pool


async def test_a_job_starts_on_an_idle_worker_in_the_enqueue(queue, token, redis_client):
    await queue.register("node-a", 2, ["w1"])
    first = job(note="x")
    enqueued = await offer(queue, [first], "w1")
    assert enqueued.added == 1
    [(worker, taken)] = enqueued.started
    assert (worker, taken.id, taken.attempts, taken.payload) == ("w1", first.id, 1, {"note": "x"})
    state = await queue.live_state(first.id)
    assert (state["status"], state["worker"], state["node"]) == ("running", "w1", "node-a")
    depths = await queue.depths()
    assert (depths["ready"], depths["processing"]) == (0, 1)
    assert {w["id"]: w["load"] for w in await queue.workers()} == {"w1": 1}
    events = [fields[b"event"] for _, fields in await redis_client.xrange(queue.key("events"))]
    assert events[-2:] == [b"job.submitted", b"job.started"]
    # It is the worker's like any job it took: its outcome is accepted and the slot comes back.
    assert await queue.finish("w1", first.id, "completed", result=b"1") == "completed"
    assert {w["id"]: w["load"] for w in await queue.workers()} == {"w1": 0}


async def test_each_idle_worker_takes_one_job_and_the_rest_wait_for_dispatch(queue, token):
    await queue.register("node-a", 2, ["w1", "w2"])
    jobs = [job() for _ in range(3)]
    enqueued = await offer(queue, jobs, "w1", "w2")
    assert [(w, t.id) for w, t in enqueued.started] == [("w1", jobs[0].id), ("w2", jobs[1].id)]
    assert (await queue.depths())["ready"] == 1
    assert (await queue.live_state(jobs[2].id))["status"] == "pending"


async def test_a_worker_that_holds_a_job_is_not_given_another(queue, token):
    await queue.register("node-a", 2, ["w1"])
    await offer(queue, [job()], "w1")
    enqueued = await offer(queue, [job()], "w1")
    assert enqueued.started == []
    assert (await queue.depths())["ready"] == 1


async def test_no_job_overtakes_one_that_waits(queue, token):
    await queue.register("node-a", 2, ["w1"])
    waiting = job(priority=0)
    await queue.enqueue([waiting])  # ready, not yet dispatched
    urgent = job(priority=10)
    assert (await offer(queue, [urgent], "w1")).started == []
    assert (await queue.depths())["ready"] == 2


async def test_jobs_no_idle_worker_can_run_do_not_hold_back_others(queue, token):
    await queue.register("node-a", 2, ["w1"], queues=["default"], types=["echo"])
    await queue.enqueue([job(job_type="resize"), job(queue_name="media")])  # nobody here runs these
    mine = job()
    [(worker, taken)] = (await offer(queue, [mine], "w1")).started
    assert (worker, taken.id) == ("w1", mine.id)
    # ... nor is one it cannot run started on it.
    assert (await offer(queue, [job(job_type="resize")], "w1")).started == []


async def test_a_job_due_later_waits_for_its_time(queue, token):
    await queue.register("node-a", 2, ["w1"])
    later = job()
    later.scheduled_at = later.created_at.replace(year=later.created_at.year + 1)
    assert (await offer(queue, [later], "w1")).started == []
    assert (await queue.depths())["delayed"] == 1


async def test_nothing_starts_without_a_leader_or_during_a_takeover(queue, redis_client):
    await queue.register("node-a", 2, ["w1"])
    assert (await offer(queue, [job()], "w1")).started == []  # no leader lease
    lease = LeaderLease(queue.redis, queue.scripts, queue.prefix, "leader", ttl_s=60)
    await lease.acquire()
    await redis_client.set(queue.key("leader:previous"), "node-old")  # its first dispatch has not run
    assert (await offer(queue, [job()], "w1")).started == []


async def test_flow_limits_leave_every_job_to_dispatch(queue, token, redis_client, key_prefix):
    await queue.register("node-a", 2, ["w1"])
    await FlowLimitStore(redis_client, key_prefix).put(FlowLimit("type", "echo", concurrency=5))
    assert (await offer(queue, [job()], "w1")).started == []


async def test_a_paused_worker_is_not_used(queue, token, redis_client):
    await queue.register("node-a", 2, ["w1"])
    group = (await redis_client.hget(queue.key("wgroup"), "w1")).decode()
    await redis_client.zrem(queue.key("free", group), "w1")  # as a takeover pauses the old leader's workers
    assert (await offer(queue, [job()], "w1")).started == []


async def test_the_pool_runs_what_a_submit_started_without_any_dispatch(queue, token):
    ran: list[str] = []

    async def record(j):
        ran.append(j.id)
        return {"ok": True}

    registry = registry_with(record=record)
    pool = await started_pool(queue, registry, workers=2)
    try:
        await wait_until(lambda: pool.idle.available == 2 or None, message="the workers never waited", timeout_s=10)
        offered = ["node-a/w1", "node-a/w2"]
        jobs = [job(job_type="record") for _ in range(2)]
        enqueued = await queue.enqueue_or_start(jobs, idle_workers=offered, lease_ms=pool.idle.lease_ms)
        for worker, taken in enqueued.started:
            pool.idle.hand(worker, taken)
        pool.idle.release(offered)
        assert len(enqueued.started) == 2

        async def both_completed():
            states = [await queue.live_state(j.id) for j in jobs]
            return all(s.get("status") == "completed" for s in states) or None

        await wait_until(both_completed, message="the jobs started by the enqueue never completed", timeout_s=10)
        assert sorted(ran) == sorted(j.id for j in jobs)
    finally:
        await pool.stop(grace_s=1)


async def test_a_worker_whose_inbox_brings_a_job_while_reserved_runs_the_started_one_first(queue, token):
    order: list[str] = []

    async def record(j):
        order.append(j.id)
        return {}

    pool = await started_pool(queue, registry_with(record=record), workers=1)
    try:
        await wait_until(lambda: pool.idle.available == 1 or None, message="the worker never waited", timeout_s=10)
        assert pool.idle.reserve(1) == ["node-a/w1"]
        started = job(job_type="record")
        enqueued = await queue.enqueue_or_start([started], idle_workers=["node-a/w1"], lease_ms=LEASE_MS)
        # The leader fills the worker's free prefetch slot before this node has the enqueue's answer.
        from_inbox = job(job_type="record")
        await queue.enqueue([from_inbox])
        assert (await queue.dispatch("leader", token, max_jobs=10, strategy="round_robin", lease_ms=LEASE_MS,
                                     share_every=0)).assigned == 1
        # Its pop brings that job back; the worker waits for the enqueue's answer before it starts anything.
        await wait_until(lambda: not pool.idle.is_waiting("node-a/w1") or None, message="the pop never came back", timeout_s=10)
        assert order == []
        for worker, taken in enqueued.started:
            pool.idle.hand(worker, taken)
        pool.idle.release(["node-a/w1"])
        await wait_until(lambda: len(order) == 2 or None, message="the worker did not run both jobs", timeout_s=10)
        assert order == [started.id, from_inbox.id]
    finally:
        await pool.stop(grace_s=1)


async def test_a_node_starts_a_submitted_job_locally_and_can_be_told_not_to(start_node):
    from jobnode.node import NODE_SERVICES

    for local_start, expected in (("true", 1), ("false", 0)):
        client, metrics_port = await start_with_metrics(start_node, WORKER_COUNT="2", LOCAL_START=local_start)
        services = client.server.app[NODE_SERVICES]
        await wait_until(lambda: services.leadership.is_leader or None, message="the node never led", timeout_s=10)
        await wait_until(lambda: services.pool.idle.available == 2 or None, message="the workers never waited", timeout_s=10)
        resp = await client.post("/api/v1/jobs", json={"type": "echo", "payload": {"n": 1}, "durability": "queue"})
        assert resp.status == 201
        job_id = (await resp.json())["id"]

        async def completed():
            body = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
            return body if body["status"] == "completed" else None

        assert (await wait_until(completed, message="the job never completed", timeout_s=10))["result"] == {"n": 1}
        assert services.pool.idle.started == expected
        assert value(await scrape(metrics_port), "jobnode_jobs_started_locally_total") == expected
        await client.close()


async def test_a_job_the_inbox_brings_during_a_handed_job_goes_back_to_the_inbox(queue, token, redis_client):
    release = asyncio.Event()

    async def hold(j):
        await release.wait()
        return {}

    pool = await started_pool(queue, registry_with(hold=hold), workers=1)
    try:
        await wait_until(lambda: pool.idle.available == 1 or None, message="the worker never waited", timeout_s=10)
        offered = pool.idle.reserve(1)
        long_job = job(job_type="hold")
        enqueued = await queue.enqueue_or_start([long_job], idle_workers=offered, lease_ms=LEASE_MS)
        for worker, taken in enqueued.started:
            pool.idle.hand(worker, taken)
        pool.idle.release(offered)
        await wait_until(lambda: pool.busy == 1 or None, message="the handed job never ran", timeout_s=10)
        # The leader fills the free prefetch slot; the pop the worker had under way brings it,
        # and it goes back to the inbox, where heartbeats renew its lease while it waits.
        prefetched = job(job_type="hold")
        await queue.enqueue([prefetched])
        assert (await queue.dispatch("leader", token, max_jobs=10, strategy="round_robin", lease_ms=LEASE_MS,
                                     share_every=0)).assigned == 1

        async def in_the_inbox():
            return [i.decode() for i in await redis_client.lrange(queue.key("inbox", "node-a/w1"), 0, -1)] or None

        assert await wait_until(in_the_inbox, message="the popped job was not put back", timeout_s=10) == [
            prefetched.id]
        release.set()

        async def both_completed():
            states = [await queue.live_state(j.id) for j in (long_job, prefetched)]
            return all(s.get("status") == "completed" for s in states) or None

        await wait_until(both_completed, message="the jobs never completed", timeout_s=10)
    finally:
        release.set()
        await pool.stop(grace_s=1)


async def test_a_node_that_sees_no_leader_starts_nothing_itself(start_node):
    from jobnode.node import NODE_SERVICES

    client = await start_node(WORKER_COUNT="2")
    services = client.server.app[NODE_SERVICES]
    await wait_until(lambda: services.leadership.is_leader or None, message="the node never led", timeout_s=10)
    await wait_until(lambda: services.pool.idle.available == 2 or None, message="the workers never waited", timeout_s=10)
    # As a raft node cut off from the majority sees it, while the lease it last saw still lingers in Redis.
    services.jobs.leader_known = lambda: False
    resp = await client.post("/api/v1/jobs", json={"type": "echo", "payload": {}, "durability": "queue"})
    job_id = (await resp.json())["id"]

    async def completed():
        return (await (await client.get(f"/api/v1/jobs/{job_id}")).json())["status"] == "completed" or None

    await wait_until(completed, message="the job never completed", timeout_s=10)  # through the leader's dispatch
    assert services.pool.idle.started == 0
