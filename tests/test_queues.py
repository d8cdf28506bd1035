"""Named queues and routing: a job runs only on a worker that serves its queue and whose node has its type.

Nodes run in-process against the session's Redis and SecantusDB, several at once sharing one
key prefix (so one cluster); the multi-process versions are in test_queue_processes.py.
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import AsyncExitStack

import pytest

from jobnode.client import AsyncClient, PayloadRejected, UnknownQueue
from jobnode.core.job import Job, JobSpec
from jobnode.core.queues import WorkerGroup, parse_queues, served_queues, worker_groups
from jobnode.observability.metrics import NodeMetrics
from tests.harness import make_settings, registry_with, running_node
from tests.waiting import wait_until

RESIZE_SCHEMA = {
    "type": "object",
    "properties": {"width": {"type": "integer", "minimum": 1}, "height": {"type": "integer", "minimum": 1}},
    "required": ["width", "height"],
    "additionalProperties": False,
}
LEASE_MS = 60_000


async def resize(job):
    """Scale an image (a stand-in: returns the size it was asked for)."""
    return {"size": [job.payload["width"], job.payload["height"]]}


def resize_registry():
    registry = registry_with()
    registry.register("resize", resize, payload=RESIZE_SCHEMA)
    return registry


@pytest.fixture
def node_settings(redis_server, mongo_server, key_prefix, mongo_db_name):
    def settings(node_id: str, **env: str):
        return make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name, NODE_ID=node_id, **env)

    return settings


async def post(client, path, body, expect):
    resp = await client.post(path, json=body)
    data = await resp.json()
    assert resp.status == expect, data
    return data


async def all_finished(client, ids, timeout_s=20.0):
    async def check():
        jobs = [await (await client.get(f"/api/v1/jobs/{job_id}")).json() for job_id in ids]
        return jobs if all(job["status"] in ("completed", "failed") for job in jobs) else None

    return await wait_until(check, timeout_s=timeout_s, message="jobs did not finish")


async def statuses(client, ids):
    return [(await (await client.get(f"/api/v1/jobs/{job_id}")).json())["status"] for job_id in ids]


# --- the queue layout of a node ---


def test_counted_queues_get_workers_of_their_own_and_the_rest_share_worker_count():
    served = parse_queues("default, media:2, reports")
    assert worker_groups(served, 8) == [WorkerGroup(("default", "reports"), 8), WorkerGroup(("media",), 2)]
    assert worker_groups(parse_queues("media:2"), 8) == [WorkerGroup(("media",), 2)]
    assert worker_groups(served, 0) == [WorkerGroup(("media",), 2)]


def test_without_queues_a_node_serves_default_and_its_processors_queues():
    assert served_queues({}, ["media", "default"]) == {"default": None, "media": None}
    assert served_queues({"media": 3}, ["default"]) == {"media": 3}


# --- dispatch picks only workers that can run the job (Redis scripts directly) ---


async def held_by(queue, workers):
    found = {}
    for worker in workers:
        for raw in await queue.redis.smembers(queue.key("wjobs", worker)):
            found[raw.decode()] = worker
    return found


@pytest.mark.parametrize("strategy", ["round_robin", "least_loaded", "random", "priority"])
async def test_every_strategy_assigns_only_workers_that_serve_the_queue_and_have_the_type(queue, token, strategy):
    await queue.register("node-a", 100, ["a1", "a2"], queues=["default"], types=["echo"])
    await queue.register("node-b", 100, ["b1"], queues=["default", "media"], types=["echo", "resize"])
    jobs = ([Job.new(JobSpec(type="echo", priority=p % 11)) for p in range(30)]
            + [Job.new(JobSpec(type="resize", priority=9)) for _ in range(10)]
            + [Job.new(JobSpec(type="echo", queue="media")) for _ in range(10)])
    await queue.enqueue(jobs)
    result = await queue.dispatch("leader", token, max_jobs=1000, strategy=strategy, lease_ms=LEASE_MS,
                                  share_every=3)
    assert result.assigned == 50
    holders = await held_by(queue, ["a1", "a2", "b1"])
    for job in jobs:
        if job.type == "resize" or job.queue == "media":
            assert holders[job.id] == "b1", (job.type, job.queue)
    assert {holders[job.id] for job in jobs[:30]} - {"b1"}, "the echo jobs used node-a's workers too"


async def test_a_job_no_group_can_run_stays_ready_and_is_counted_unroutable(queue, token):
    await queue.register("node-a", 10, ["a1"], queues=["default"], types=["echo"])
    waiting = [Job.new(JobSpec(type="resize")) for _ in range(3)]
    await queue.enqueue([*waiting, Job.new(JobSpec(type="echo"))])
    result = await queue.dispatch("leader", token, max_jobs=100, strategy="round_robin", lease_ms=LEASE_MS,
                                  share_every=0)
    assert result.assigned == 1
    routes = {(r.queue, r.type): (r.ready, r.routable) for r in await queue.routes()}
    assert routes == {("default", "resize"): (3, False)}
    metrics = NodeMetrics(["echo"])
    await metrics.refresh_queue_depth(queue)
    assert b'jobnode_jobs_unroutable{queue="default",type="resize"} 3.0' in metrics.exposition()

    await queue.register("node-b", 10, ["b1"], queues=["default"], types=["resize"])
    result = await queue.dispatch("leader", token, max_jobs=100, strategy="round_robin", lease_ms=LEASE_MS,
                                  share_every=0)
    assert result.assigned == 3
    assert set((await held_by(queue, ["b1"]))) == {job.id for job in waiting}
    await metrics.refresh_queue_depth(queue)
    assert b"jobnode_jobs_unroutable{" not in metrics.exposition()


async def test_jobs_left_in_the_single_ready_set_of_an_older_version_are_moved_to_their_routes(queue, token):
    job = Job.new(JobSpec(type="echo", priority=7))
    await queue.enqueue([job])
    route = queue.key("ready", "default:echo")
    score = await queue.redis.zscore(route, job.id)
    # As the version before queues kept it: one ready set, one fifo set.
    await queue.redis.zrem(route, job.id)
    await queue.redis.zrem(queue.key("fifo", "default:echo"), job.id)
    await queue.redis.zadd(queue.key("ready"), {job.id: score})
    await queue.redis.zadd(queue.key("fifo"), {job.id: 1})
    await queue.register("node-a", 1, ["a1"], queues=["default"], types=["echo"])
    result = await queue.dispatch("leader", token, max_jobs=10, strategy="round_robin", lease_ms=LEASE_MS,
                                  share_every=0)
    assert result.assigned == 1 and set(await held_by(queue, ["a1"])) == {job.id}
    assert not await queue.redis.exists(queue.key("ready"), queue.key("fifo"))


async def test_a_worker_group_leaves_with_its_last_worker(queue):
    await queue.register("node-a", 1, ["a1"], queues=["media"], types=["resize"])
    assert [g["queues"] for g in await queue.served()] == [["media"]]
    await queue.handback(["a1"])
    assert await queue.served() == []


# --- nodes ---


async def test_only_the_node_with_the_type_runs_it_and_its_jobs_wait_while_it_is_away(node_settings):
    async with AsyncExitStack() as stack:
        node1 = await stack.enter_async_context(running_node(node_settings("node-1")))
        node2_settings = node_settings("node-2")
        async with running_node(node2_settings, resize_registry()) as node2:
            bodies = [{"type": "resize", "payload": {"width": i + 1, "height": 2}} for i in range(6)]
            first = (await post(node1, "/api/v1/jobs/batch", {"jobs": bodies}, 201))["jobs"]
            done = await all_finished(node1, [job["id"] for job in first])
            assert {(job["status"], job["node_id"]) for job in done} == {("completed", "node-2")}
            types = (await (await node1.get("/api/v1/types")).json())["types"]
            resize_row = next(row for row in types if row["type"] == "resize")
            assert resize_row["nodes"] == ["node-2"] and resize_row["payload_schema"] == RESIZE_SCHEMA
            assert resize_row["doc"].startswith("Scale an image")
            assert next(row for row in types if row["type"] == "echo")["nodes"] == ["node-1", "node-2"]

        # node-2 is gone: its type's jobs wait, the others still run.
        waiting = (await post(node1, "/api/v1/jobs/batch", {"jobs": bodies}, 201))["jobs"]
        echoes = [(await post(node1, "/api/v1/jobs", {"type": "echo", "payload": {"n": i}}, 201))["id"]
                  for i in range(3)]
        assert {job["status"] for job in await all_finished(node1, echoes)} == {"completed"}

        async def unroutable():
            stats = await (await node1.get("/api/v1/stats")).json()
            return stats["queue"]["unroutable"]

        assert await wait_until(unroutable, timeout_s=5, message="no unroutable count") == [
            {"queue": "default", "type": "resize", "jobs": 6}]
        assert set(await statuses(node1, [job["id"] for job in waiting])) == {"pending"}

        async with running_node(node2_settings, resize_registry()):
            done = await all_finished(node1, [job["id"] for job in waiting])
            assert {(job["status"], job["node_id"], job["attempts"]) for job in done} == {("completed", "node-2", 1)}
            assert await unroutable() == []


async def test_bad_payloads_are_refused_on_a_node_without_the_processor(node_settings):
    async with running_node(node_settings("node-2", WORKER_COUNT="0"), resize_registry()), \
            running_node(node_settings("node-1")) as node1:
        bad = await post(node1, "/api/v1/jobs", {"type": "resize", "payload": {"width": 0, "heigth": 3}}, 400)
        assert bad["error"]["code"] == "invalid_payload"
        fields = {e["field"] for e in bad["error"]["details"]["errors"]}
        assert fields == {"payload.width", "payload.height", "payload.heigth"}

        batch = {"jobs": [{"type": "resize", "payload": {"width": 1, "height": 1}},
                          {"type": "resize", "payload": {"width": "wide", "height": 1}},
                          {"type": "sleep", "payload": {"secnds": 1}}]}
        bad = await post(node1, "/api/v1/jobs/batch", batch, 400)
        fields = {e["field"] for e in bad["error"]["details"]["errors"]}
        assert fields == {"jobs[1].payload.width", "jobs[2].payload.secnds", "jobs[2].payload.seconds"}
        listed = await (await node1.get("/api/v1/jobs")).json()
        assert listed["count"] == 0, "nothing of a refused batch is kept"

        good = await post(node1, "/api/v1/jobs", {"type": "resize", "payload": {"width": 3, "height": 4}}, 201)
        assert good["queue"] == "default"


async def test_an_unknown_queue_is_refused_with_the_queues_served(node_settings):
    async with running_node(node_settings("node-1", QUEUES="default,media:1")) as node1:
        bad = await post(node1, "/api/v1/jobs", {"type": "echo", "queue": "videos"}, 400)
        assert bad["error"]["code"] == "unknown_queue"
        assert bad["error"]["details"]["field"] == "queue"
        assert bad["error"]["details"]["queues"] == ["default", "media"]
        assert "media" in bad["error"]["message"]
        bad = await post(node1, "/api/v1/jobs", {"type": "echo", "queue": "Not A Queue"}, 400)
        assert bad["error"]["details"]["field"] == "queue"
        job = await post(node1, "/api/v1/jobs", {"type": "echo", "queue": "media"}, 201)
        assert job["queue"] == "media"
        [done] = await all_finished(node1, [job["id"]])
        assert done["status"] == "completed"


async def test_a_processors_queue_is_its_jobs_default_and_per_queue_worker_counts_hold(node_settings):
    running, most = 0, 0
    release = asyncio.Event()

    async def transcode(job):
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await release.wait()
        finally:
            running -= 1
        return "ok"

    registry = registry_with()
    registry.register("transcode", transcode, queue="media")
    settings = node_settings("node-1", QUEUES="default,media:2", WORKER_COUNT="3", WORKER_PREFETCH="2")
    async with running_node(settings, registry) as node:
        ids = [(await post(node, "/api/v1/jobs", {"type": "transcode"}, 201)) for _ in range(8)]
        assert {job["queue"] for job in ids} == {"media"}
        await wait_until(lambda: running == 2, timeout_s=10, message="two transcodes did not start")
        # The default queue's workers are free, yet they never take a media job.
        echoes = [(await post(node, "/api/v1/jobs", {"type": "echo"}, 201))["id"] for _ in range(3)]
        assert {job["status"] for job in await all_finished(node, echoes)} == {"completed"}
        stats = await (await node.get("/api/v1/stats")).json()
        assert stats["node"]["worker_count"] == 5 and stats["node"]["queues"] == ["default", "media"]
        assert running == 2
        release.set()
        done = await all_finished(node, [job["id"] for job in ids])
        assert {job["status"] for job in done} == {"completed"}
        assert most == 2


async def test_a_worker_without_the_processor_puts_the_job_back_instead_of_failing_it(node_settings, queue):
    async def flaky_route(job):
        return "ran"

    async with running_node(node_settings("node-1", WORKER_COUNT="1")) as node1:
        # A worker group record that claims any type (as after a hand edit of Redis): the
        # leader then routes a type node-1 lacks to its worker.
        await queue.register("node-1", 2, ["node-1/w1"], queues=["default"], types=None)
        registry = registry_with(later=flaky_route)
        async with running_node(node_settings("node-2", WORKER_COUNT="0"), registry):
            job = await post(node1, "/api/v1/jobs", {"type": "later"}, 201)

            async def returned_twice():  # assigned, running, pending again: three revs a round
                return int((await queue.live_state(job["id"])).get("rev", 0)) >= 6

            await wait_until(returned_twice, timeout_s=10, message="the worker never handed the job back")
            live = await queue.live_state(job["id"])
            assert live["status"] in ("pending", "assigned", "running")
            assert int(live["attempts"]) <= 1 and live.get("errors", "[]") == "[]"
            assert await queue.redis.zcard(queue.key("dead")) == 0


async def test_the_client_the_cli_and_the_openapi_document_know_queues_types_and_schemas(node_settings):
    async with running_node(node_settings("node-1", QUEUES="default,media"), resize_registry()) as node:
        url = str(node.make_url("")).rstrip("/")
        async with AsyncClient(url) as client:
            job = await client.submit("echo", {"n": 1}, queue="media")
            assert job["queue"] == "media"
            with pytest.raises(UnknownQueue) as unknown:
                await client.submit("echo", {}, queue="videos")
            assert unknown.value.details["queues"] == ["default", "media"]
            with pytest.raises(PayloadRejected) as rejected:
                await client.submit("resize", {"width": -1, "height": 1})
            assert [e["field"] for e in rejected.value.details["errors"]] == ["payload.width"]
            assert [row["type"] for row in await client.types()] == ["echo", "email", "http", "resize", "sleep"]

        document = await (await node.get("/api/v1/openapi.json")).json()
        schemas = document["components"]["schemas"]
        assert schemas["Payload.resize"] == RESIZE_SCHEMA
        rule = {"if": {"properties": {"type": {"const": "resize"}}, "required": ["type"]},
                "then": {"properties": {"payload": {"$ref": "#/components/schemas/Payload.resize"}}}}
        assert rule in schemas["JobSubmission"]["allOf"]
        assert "/api/v1/types" in document["paths"]

        command = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jobnode", "types", "--url", url, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(command.communicate(), timeout=60)
        assert command.returncode == 0, err
        lines = out.decode().splitlines()
        assert lines[0].split() == ["type", "queue", "schema", "nodes"]
        resize_line = next(line for line in lines if line.startswith("resize"))
        assert resize_line.split() == ["resize", "default", "yes", "node-1"]
        assert "Scale an image" in lines[lines.index(resize_line) + 1]
