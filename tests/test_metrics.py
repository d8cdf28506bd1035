"""Metrics: a real node's /metrics on METRICS_PORT, fed by real jobs and requests."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from jobnode.dev.embedded import free_port
from jobnode.observability.metrics import NodeMetrics, NodeReadings
from jobnode.observability.metrics_endpoint import MetricsEndpoint
from jobnode.node import StartupError
from jobnode.processors.registry import PermanentError
from jobnode.storage.redis.queue import JobQueue
from tests.harness import make_settings, registry_with, running_node, start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def scrape(port: int) -> Samples:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            return parse(await resp.text())


async def start_with_metrics(start_node, processors=None, **env: str):
    port = free_port()
    client = await start_node(processors, METRICS_ENABLED="true", METRICS_PORT=str(port), SERVER_HOST="127.0.0.1",
                              **env)
    return client, port


async def finished(client, job_id: str) -> dict:
    async def check():
        job = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return job if job["status"] in ("completed", "failed") else None

    return await wait_until(check, timeout_s=20, message=f"job {job_id} never finished")


async def test_a_node_serves_the_spec_metrics_fed_by_real_jobs(start_node):
    client, port = await start_with_metrics(start_node)
    ids = []
    for i in range(3):
        resp = await client.post("/api/v1/jobs", json={"type": "echo", "payload": {"i": i}})
        ids.append((await resp.json())["id"])
    for job_id in ids:
        await finished(client, job_id)

    async def counted():
        samples = await scrape(port)
        done = value(samples, "jobnode_jobs_completed_total", type="echo", status="completed")
        return samples if done == 3 else None

    samples = await wait_until(counted, timeout_s=10, message="completions never reached /metrics")
    assert value(samples, "jobnode_jobs_submitted_total", type="echo") == 3
    assert value(samples, "jobnode_jobs_completed_total", type="echo", status="failed") == 0
    assert value(samples, "jobnode_job_processing_duration_seconds_count", type="echo") == 3
    assert value(samples, "jobnode_job_wait_duration_seconds_count") == 3
    assert value(samples, "jobnode_job_retries_total", type="echo") == 0
    # Three submits, one after another: each was its own batch, inserted and then enqueued.
    for stage in ("store_insert", "queue_enqueue"):
        assert value(samples, "jobnode_submit_write_duration_seconds_count", stage=stage) == 3, stage
        assert value(samples, "jobnode_submit_write_duration_seconds_sum", stage=stage) > 0, stage
    assert value(samples, "jobnode_workers") == 2
    assert value(samples, "jobnode_workers_active") is not None
    assert value(samples, "jobnode_is_leader") == 1  # a lone node leads
    assert value(samples, "jobnode_cluster_members", state="alive") == 1
    assert value(samples, "jobnode_election_leader_changes_total") >= 1
    assert value(samples, "jobnode_election_term") is not None
    assert value(samples, "jobnode_node_uptime_seconds") > 0
    assert value(samples, "jobnode_node_info", node_id="node-1", algorithm="bully", strategy="round_robin") == 1
    for state in ("pending", "processing", "delayed", "dead"):
        assert value(samples, "jobnode_queue_depth", state=state) == 0, state
    assert value(samples, "jobnode_outbox_oldest_age_seconds") is not None
    for counter in ("jobnode_reconciler_requeued_total", "jobnode_jobs_reaped_total", "jobnode_workers_reaped_total"):
        assert value(samples, counter) == 0, counter
    assert value(samples, "jobnode_peer_messages_refused_total", reason="bad_signature") == 0
    assert 0 <= value(samples, "jobnode_jobs_started_locally_total") <= 3
    assert not [name for name in names(samples) if name.endswith("_created")]
    # The standard collectors of the node's own registry.
    assert {"process_cpu_seconds_total", "python_info", "python_gc_objects_collected_total"} <= names(samples)


async def test_http_metrics_use_route_templates_and_bounded_labels(start_node):
    client, port = await start_with_metrics(start_node, WORKER_COUNT="0")
    job = await (await client.post("/api/v1/jobs", json={"type": "echo"})).json()
    await client.get(f"/api/v1/jobs/{job['id']}")
    await client.get("/api/v1/jobs/0123456789abcdef0123456789abcdef")  # 404 from the handler
    await client.get("/no/such/path/12345")
    await client.request("PROPFIND", "/api/v1/jobs")

    samples = await scrape(port)
    requests = {dict(labels)["route"]: None for name, labels in samples if name == "jobnode_http_requests_total"}
    assert "/api/v1/jobs/{job_id}" in requests and "/api/v1/jobs" in requests and "unmatched" in requests
    assert not any(job["id"] in route or "12345" in route for route in requests)
    assert value(samples, "jobnode_http_requests_total", method="POST", route="/api/v1/jobs", status="201") == 1
    assert value(samples, "jobnode_http_requests_total", method="GET", route="/api/v1/jobs/{job_id}",
                 status="404") == 1
    assert value(samples, "jobnode_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert value(samples, "jobnode_http_requests_total", method="other", route="unmatched", status="405") == 1
    assert value(samples, "jobnode_http_request_duration_seconds_count", method="GET",
                 route="/api/v1/jobs/{job_id}") == 2
    assert value(samples, "jobnode_queue_depth", state="pending") == 1  # no workers: it waits


async def test_retries_and_dead_letters_are_counted_per_type(start_node):
    async def flaky(job):
        raise RuntimeError("always fails")

    async def broken(job):
        raise PermanentError("never works")

    registry = registry_with(flaky=flaky, broken=broken)
    client, port = await start_with_metrics(start_node, registry)
    flaky_job = await (await client.post("/api/v1/jobs", json={"type": "flaky", "max_retries": 2})).json()
    broken_job = await (await client.post("/api/v1/jobs", json={"type": "broken"})).json()
    assert (await finished(client, flaky_job["id"]))["status"] == "failed"
    assert (await finished(client, broken_job["id"]))["status"] == "failed"

    samples = await scrape(port)
    assert value(samples, "jobnode_job_retries_total", type="flaky") == 2
    assert value(samples, "jobnode_jobs_completed_total", type="flaky", status="failed") == 1
    assert value(samples, "jobnode_job_processing_duration_seconds_count", type="flaky") == 3
    assert value(samples, "jobnode_jobs_completed_total", type="broken", status="failed") == 1
    assert value(samples, "jobnode_job_retries_total", type="broken") == 0
    # Only the first attempt measures the wait from submission.
    assert value(samples, "jobnode_job_wait_duration_seconds_count") == 2
    assert value(samples, "jobnode_queue_depth", state="dead") == 2


def test_each_node_has_its_own_registry_and_unknown_types_get_no_series() -> None:
    first, second = NodeMetrics(["echo"]), NodeMetrics(["echo"])
    first.job_submitted("echo")
    first.job_submitted("not-registered")
    first.attempt_finished("not-registered", "completed", 0.1)
    first.http_request("PROPFIND", "/x", 200, 0.01)
    one, two = parse(first.exposition().decode()), parse(second.exposition().decode())
    assert value(one, "jobnode_jobs_submitted_total", type="echo") == 1
    assert value(two, "jobnode_jobs_submitted_total", type="echo") == 0
    assert not any(dict(labels).get("type") == "not-registered" for _, labels in one)
    assert value(one, "jobnode_http_requests_total", method="other", route="/x", status="200") == 1


def test_live_gauges_are_read_through_the_readings_at_each_scrape() -> None:
    state = {"busy": 1, "leader": False, "members": ["alive", "alive", "suspect"]}
    metrics = NodeMetrics(["echo"])
    metrics.watch(NodeReadings(
        workers_busy=lambda: state["busy"], workers_total=lambda: 4, is_leader=lambda: state["leader"],
        election_term=lambda: 7, leader_changes=lambda: 3, member_states=lambda: state["members"]))
    before = parse(metrics.exposition().decode())
    assert value(before, "jobnode_workers_active") == 1 and value(before, "jobnode_workers") == 4
    assert value(before, "jobnode_is_leader") == 0 and value(before, "jobnode_election_term") == 7
    assert value(before, "jobnode_election_leader_changes_total") == 3
    assert value(before, "jobnode_cluster_members", state="alive") == 2
    assert value(before, "jobnode_cluster_members", state="suspect") == 1
    state.update(busy=3, leader=True, members=["alive", "bogus"])
    after = parse(metrics.exposition().decode())
    assert value(after, "jobnode_workers_active") == 3 and value(after, "jobnode_is_leader") == 1
    assert value(after, "jobnode_cluster_members", state="alive") == 1
    assert value(after, "jobnode_cluster_members", state="suspect") == 0
    assert not any(dict(labels).get("state") == "bogus" for _, labels in after)  # unknown states get no series


async def test_metrics_disabled_serves_nothing(start_node):
    port = free_port()
    client = await start_node(METRICS_ENABLED="false", METRICS_PORT=str(port), SERVER_HOST="127.0.0.1")
    assert (await client.get("/health")).status == 200
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


async def test_a_taken_metrics_port_stops_the_node_naming_it(redis_server, mongo_server, key_prefix,
                                                             mongo_db_name):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name,
                                 METRICS_ENABLED="true", METRICS_PORT=str(port), SERVER_HOST="127.0.0.1")
        with pytest.raises(StartupError, match=f"127.0.0.1:{port} \\(METRICS_PORT\\)"):
            async with running_node(settings):
                pass


async def test_a_scrape_succeeds_without_queue_depths_while_redis_is_unreachable(redis_server, key_prefix):
    metrics = NodeMetrics(["echo"])
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    reachable = Redis.from_url(redis_server.url)
    unreachable = Redis.from_url(f"redis://127.0.0.1:{dead_port}", socket_connect_timeout=1)
    try:
        await metrics.refresh_queue_depth(JobQueue(reachable, key_prefix))
        assert value(parse(metrics.exposition().decode()), "jobnode_queue_depth", state="pending") == 0
        endpoint = MetricsEndpoint(metrics, lambda: JobQueue(unreachable, key_prefix))
        async with TestClient(TestServer(endpoint.app())) as client:
            resp = await client.get("/metrics")
            assert resp.status == 200
            samples = parse(await resp.text())
        assert "jobnode_queue_depth" not in names(samples)  # unknown, not a stale "healthy" value
        assert value(samples, "jobnode_jobs_submitted_total", type="echo") == 0
    finally:
        await reachable.aclose()
        await unreachable.aclose()


def test_no_counter_exports_a_created_series() -> None:
    metrics = NodeMetrics(["echo"])
    metrics.job_submitted("echo")
    metrics.http_request("GET", "/x", 200, 0.01)
    metrics.store_error("redis", "depths", "unreachable")
    assert not [name for name in names(parse(metrics.exposition().decode())) if name.endswith("_created")]


async def test_the_outbox_backlog_and_the_age_of_its_oldest_entry(redis_client, key_prefix):
    queue = JobQueue(redis_client, key_prefix)
    metrics = NodeMetrics(["echo"])
    await metrics.refresh_queue_depth(queue)
    empty = parse(metrics.exposition().decode())
    assert value(empty, "jobnode_outbox_entries") == 0 and value(empty, "jobnode_outbox_oldest_age_seconds") == 0

    # Two changes MongoDB has not taken yet, the older one written 90 s ago by Redis's clock.
    now_s, _ = await redis_client.time()
    await redis_client.xadd(queue.key("outbox"), {"id": "a"}, id=f"{(now_s - 90) * 1000}-0")
    await redis_client.xadd(queue.key("outbox"), {"id": "b"})
    await metrics.refresh_queue_depth(queue)
    backlog = parse(metrics.exposition().decode())
    assert value(backlog, "jobnode_outbox_entries") == 2
    assert 90 <= value(backlog, "jobnode_outbox_oldest_age_seconds") < 120


async def test_redis_and_mongodb_errors_are_counted_by_operation(key_prefix):
    from pymongo import AsyncMongoClient

    from jobnode.core import store_errors
    from jobnode.core.errors import Unavailable
    from jobnode.storage.mongo.jobs import JobStore

    metrics = NodeMetrics(["echo"])
    dead_port = free_port()
    redis = Redis.from_url(f"redis://127.0.0.1:{dead_port}", socket_connect_timeout=1)
    mongo = AsyncMongoClient(f"mongodb://127.0.0.1:{dead_port}", serverSelectionTimeoutMS=200)
    stop = store_errors.subscribe(metrics.store_error)
    try:
        with pytest.raises(Unavailable):
            await JobQueue(redis, key_prefix).completed_total()
        with pytest.raises(Unavailable):
            await JobStore(mongo["jobs_test"]).get("0123456789abcdef0123456789abcdef")
    finally:
        stop()
        await redis.aclose()
        await mongo.close()
    samples = parse(metrics.exposition().decode())
    assert value(samples, "jobnode_storage_errors_total", store="redis", operation="completed_total",
                 kind="unreachable") == 1
    assert value(samples, "jobnode_storage_errors_total", store="mongodb", operation="get", kind="unreachable") == 1


def test_reaped_jobs_requeued_jobs_and_refused_peer_messages_are_counted() -> None:
    from jobnode.auth.peer_signatures import Verifier
    from jobnode.core.errors import Unauthorized

    verifier = Verifier(b"s" * 32)
    with pytest.raises(Unauthorized):
        verifier.check("POST", "/internal/election", {}, b"{}", 0.0)
    counts = {"requeued": 4, "jobs": 3, "workers": 1}
    metrics = NodeMetrics(["echo"])
    metrics.watch(NodeReadings(
        workers_busy=lambda: 0, workers_total=lambda: 1, is_leader=lambda: True, election_term=lambda: 1,
        leader_changes=lambda: 1, member_states=lambda: ["alive"], reconciler_requeued=lambda: counts["requeued"],
        reaped_jobs=lambda: counts["jobs"], reaped_workers=lambda: counts["workers"],
        peer_refusals=lambda: verifier.refused_by_reason))
    samples = parse(metrics.exposition().decode())
    assert value(samples, "jobnode_reconciler_requeued_total") == 4
    assert value(samples, "jobnode_jobs_reaped_total") == 3
    assert value(samples, "jobnode_workers_reaped_total") == 1
    assert value(samples, "jobnode_peer_messages_refused_total", reason="unsigned") == 1
    assert value(samples, "jobnode_peer_messages_refused_total", reason="replay") == 0
