"""The completion rate: derived from samples, and sampled in the background on every node."""

from __future__ import annotations

from jobnode.api.appkeys import SYSTEM_SERVICE
from jobnode.observability.throughput import Throughput
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until


def test_rate_is_the_counter_growth_over_the_time_the_samples_span():
    rate = Throughput(window_s=60)
    rate.observe(100.0, 0)
    assert rate.per_second() is None and rate.span_s() is None
    rate.observe(110.0, 500)
    rate.observe(120.0, 1000)
    assert rate.per_second() == 50.0 and rate.span_s() == 20.0


def test_samples_older_than_the_window_drop_out():
    rate = Throughput(window_s=60)
    rate.observe(0.0, 0)
    rate.observe(10.0, 6000)  # a burst long ago
    rate.observe(75.0, 6000)
    rate.observe(80.0, 6000)
    assert rate.per_second() == 0.0
    assert rate.span_s() == 70.0  # the oldest kept sample is the last one before the window


def test_a_counter_that_goes_back_restarts_the_samples():
    rate = Throughput()
    rate.observe(0.0, 900)
    rate.observe(5.0, 1000)
    rate.observe(10.0, 3)  # Redis lost its data: no negative rate
    assert rate.per_second() is None
    rate.observe(15.0, 13)
    assert rate.per_second() == 2.0


async def test_every_node_reports_the_cluster_rate_without_being_asked_first(start_node):
    runner = await start_node(NODE_ID="node-1", THROUGHPUT_SAMPLE_INTERVAL="20ms")
    bystander = await start_node(NODE_ID="node-2", WORKER_COUNT="0", THROUGHPUT_SAMPLE_INTERVAL="20ms")
    sampled = bystander.app[SYSTEM_SERVICE].throughput
    await wait_until(lambda: sampled.per_second() is not None, timeout_s=10, message="two samples taken")

    response = await runner.post("/api/v1/jobs/batch", json={"jobs": [{"type": "echo"} for _ in range(30)]})
    assert response.status == 201, await response.text()

    async def all_completed() -> bool:
        stats = await (await runner.get("/api/v1/stats")).json()
        return stats["queue"]["completed"] >= 30

    await wait_until(all_completed, timeout_s=20, message="30 jobs completed")
    # node-2 ran none of them and nobody asked it for stats, yet its sampler saw them finish.
    await wait_until(lambda: (sampled.per_second() or 0) > 0, timeout_s=10, message="node-2 sees a rate")

    stats = await (await bystander.get("/api/v1/stats")).json()
    assert stats["throughput"]["completed_per_s"] > 0
    assert stats["throughput"]["scope"] == "cluster"
    assert 0 < stats["throughput"]["window_s"] <= 60
