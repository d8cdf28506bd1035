"""A real 3-node `jobnode dev` cluster serves its metrics; a real Prometheus evaluates every monitoring query.

The flow, as an operator would see it: start the cluster, run jobs that complete, retry and
fail, and read each node's metrics URL from cluster.json. Then point Prometheus at those
URLs (with monitoring/alerts.yml loaded) and ask it for every expression of the Grafana
dashboard and of the alert rules. The Prometheus half needs the `prometheus` and `promtool`
binaries (Debian package `prometheus`, which .ci/run installs) and skips, saying so, without
them; the first half, which also follows a request id into a worker's log on another
process, always runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from redis.asyncio import Redis

from jobnode.api.request_ids import REQUEST_ID_HEADER
from jobnode.client import AsyncClient
from jobnode.core.job import Job, JobSpec
from jobnode.core.settings import Settings
from jobnode.storage.redis.queue import JobQueue
from jobnode.dev.embedded import free_port
from tests.test_metrics import Samples, parse, value
from tests.test_metrics_monitoring import (ALERTS, FIRST_FAILURE_SERIES, alert_rules, dashboard_expressions,
                                           metric_names)
from tests.waiting import wait_until

NODES = 3
SCRAPE_INTERVAL = "1s"
MISSING = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]
needs_prometheus = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: install the Debian package `prometheus` "
    "(.ci/run does: apt-get install --no-install-recommends prometheus)")


def _free_port_run(count: int) -> int:
    """The first of `count` consecutive free ports (`jobnode dev` gives node i port+i-1)."""
    for _ in range(50):
        first = free_port()
        if first + count >= 65536:
            continue
        try:
            for port in range(first, first + count):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise RuntimeError(f"no run of {count} free ports found")


@pytest_asyncio.fixture(scope="module")
async def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """`jobnode dev --nodes 3` with embedded Redis and SecantusDB, shared by this module's tests."""
    tmp_path = tmp_path_factory.mktemp("dev")
    port = _free_port_run(NODES)
    metrics_port = _free_port_run(NODES)
    data_dir = tmp_path / "dev"
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDR", "MONGODB_URI")}
    # Debug lines carry the worker's job.started/job.completed; short retries keep the test quick.
    env.update(LOG_LEVEL="debug", RETRY_BASE_DELAY="100ms", RETRY_MAX_DELAY="200ms")
    command = [sys.executable, "-m", "jobnode", "dev", "--nodes", str(NODES), "--algorithm", "raft",
               "--port", str(port), "--metrics-port", str(metrics_port), "--data-dir", str(data_dir),
               "--workers", "2"]
    with open(tmp_path / "dev.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            cluster_file = data_dir / "cluster.json"
            await wait_until(cluster_file.exists, timeout_s=120, interval_s=0.2,
                             message=f"jobnode dev never wrote cluster.json; see {tmp_path / 'dev.log'}")
            yield {"data_dir": data_dir, "cluster": json.loads(cluster_file.read_text())}
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def prometheus(tmp_path: Path, dev_cluster: dict[str, Any]) -> AsyncIterator[str]:
    """A Prometheus server scraping the cluster's metrics URLs; yields its base URL."""
    nodes = dev_cluster["cluster"]["nodes"]
    targets = [node["metrics_url"].removeprefix("http://").removesuffix("/metrics") for node in nodes]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": SCRAPE_INTERVAL, "scrape_timeout": SCRAPE_INTERVAL,
                   "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "jobnode", "static_configs": [{"targets": targets}]}],
    }))
    promtool("check", "config", str(config))  # checks the rule file it loads as well
    port = free_port()
    log = open(tmp_path / "prometheus.log", "wb")
    process = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            async def ready() -> bool:
                async with session.get(f"{url}/-/ready") as resp:
                    return resp.status == 200

            await wait_until(ready, timeout_s=60, interval_s=0.2, ignore=(aiohttp.ClientError,),
                             message=f"prometheus never became ready; see {tmp_path / 'prometheus.log'}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def promtool(*arguments: str) -> None:
    result = subprocess.run(["promtool", *arguments], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"promtool {' '.join(arguments)}:\n{result.stdout}{result.stderr}"


async def query(session: aiohttp.ClientSession, url: str, expr: str) -> list[dict[str, Any]]:
    """Evaluate `expr` now; fails with Prometheus' own message when it does not parse or evaluate."""
    async with session.get(f"{url}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", f"{expr!r}: {body.get('errorType')}: {body.get('error')}"
    return body["data"]["result"]


async def run_jobs(api_url: str, trace: str) -> tuple[str, int]:
    """Jobs that complete, retry and dead-letter, one submitted with X-Request-Id `trace`.

    Returns the traced job's id and how many jobs were submitted.
    """
    async with AsyncClient(api_url) as client:
        jobs = [await client.submit("echo", {"n": i}) for i in range(6)]
        jobs += [await client.submit("sleep", {"seconds": 0.2}) for _ in range(3)]
        jobs.append(await client.submit("sleep", {"seconds": 0, "fail": True}, max_retries=1))
        jobs.append(await client.submit("sleep", {"seconds": 0, "fail_permanently": True}))
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{api_url}/api/v1/jobs", json={"type": "echo"},
                                    headers={REQUEST_ID_HEADER: trace}) as resp:
                assert resp.status == 201 and resp.headers[REQUEST_ID_HEADER] == trace
                traced = await resp.json()
        jobs.append(traced)
        for job in jobs:
            done = await client.wait(job["id"], timeout_s=60)
            assert done["status"] in ("completed", "failed"), done
    return traced["id"], len(jobs)


async def scrape_nodes(cluster: dict[str, Any]) -> dict[str, Samples]:
    """Each node's /metrics, straight from the node (no Prometheus involved)."""
    scraped = {}
    async with aiohttp.ClientSession() as session:
        for node in cluster["nodes"]:
            async with session.get(node["metrics_url"]) as resp:
                assert resp.status == 200, node
                scraped[node["id"]] = parse(await resp.text())
    return scraped


def total(scraped: dict[str, Samples], name: str, **labels: str) -> float:
    """The sum over nodes of every `name` series carrying (at least) these labels."""
    wanted = set(labels.items())
    return sum(v for samples in scraped.values() for (n, have), v in samples.items()
               if n == name and wanted <= have)


async def test_every_dev_node_serves_metrics_and_request_ids_reach_the_workers_logs(dev_cluster):
    cluster = dev_cluster["cluster"]
    traced_id, _ = await run_jobs(cluster["nodes"][0]["url"], trace="dev-trace-1")

    async def settled() -> dict[str, Samples] | None:
        scraped = await scrape_nodes(cluster)
        views = [value(samples, "jobnode_cluster_members", state="alive") for samples in scraped.values()]
        return scraped if total(scraped, "jobnode_is_leader") == 1 and views == [NODES] * NODES else None

    scraped = await wait_until(settled, timeout_s=30, interval_s=0.5,
                               message="the nodes never agreed on one leader and three live members")
    for node_id, samples in scraped.items():
        assert value(samples, "jobnode_workers") == 2, node_id
        assert value(samples, "jobnode_node_info", node_id=node_id, algorithm="raft",
                     strategy="round_robin") == 1
        assert value(samples, "jobnode_election_term") >= 1, node_id
    # Jobs ran on all nodes' workers; the counters add up across the cluster.
    assert total(scraped, "jobnode_jobs_completed_total", type="echo", status="completed") >= 7
    assert total(scraped, "jobnode_jobs_completed_total", type="sleep", status="failed") >= 2
    assert total(scraped, "jobnode_job_retries_total", type="sleep") >= 1
    await assert_request_id_in_worker_logs(dev_cluster["data_dir"], traced_id, "dev-trace-1")


@needs_prometheus
async def test_prometheus_evaluates_every_dashboard_and_alert_expression(dev_cluster, prometheus):
    promtool("check", "rules", str(ALERTS))
    cluster = dev_cluster["cluster"]
    await run_jobs(cluster["nodes"][0]["url"], trace="prometheus-trace-1")
    # Every node's exposition follows Prometheus's naming rules (units, _total on counters only, ...).
    async with aiohttp.ClientSession() as session:
        for node in cluster["nodes"]:
            async with session.get(node["metrics_url"]) as resp:
                exposition = await resp.text()
            linted = subprocess.run(["promtool", "check", "metrics"], input=exposition, capture_output=True,
                                    text=True, timeout=60)
            assert linted.returncode == 0, f"{node['id']}: {linted.stdout}{linted.stderr}"
    submitted = total(await scrape_nodes(cluster), "jobnode_jobs_submitted_total")
    # A job no node can run: jobnode_jobs_unroutable has a series only while there is one.
    redis = Redis.from_url(cluster["redis_url"])
    try:
        await JobQueue(redis, Settings().redis_key_prefix).enqueue([Job.new(JobSpec(type="nowhere", queue="nowhere"))])
    finally:
        await redis.aclose()

    async with aiohttp.ClientSession() as session:
        last: dict[str, Any] = {}

        async def scraped_everything() -> bool:
            # rate() and increase() need two samples in their window: wait for a few scrapes.
            last["scrapes"] = await query(session, prometheus, 'count_over_time(up{job="jobnode"}[5m]) >= 3')
            last["up"] = await query(session, prometheus, 'up{job="jobnode"}')
            last["submitted"] = await query(session, prometheus, "sum(jobnode_jobs_submitted_total)")
            up = sum(float(series["value"][1]) for series in last["up"])
            seen = sum(float(series["value"][1]) for series in last["submitted"])
            return len(last["scrapes"]) == NODES and up == NODES and seen == submitted

        try:
            await wait_until(scraped_everything, timeout_s=60, interval_s=0.5,
                             message=f"prometheus never saw all nodes up and {submitted:g} submitted jobs")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last answers: {last}") from None

        async def one_leader() -> bool:  # a scrape that timed out on a busy machine drops a node's series
            leaders = await query(session, prometheus, "sum(jobnode_is_leader)")
            return bool(leaders) and float(leaders[0]["value"][1]) == 1

        await wait_until(one_leader, timeout_s=30, interval_s=0.5, message="not exactly one lease holder")
        for expr in dashboard_expressions():  # every panel should show something
            assert await query(session, prometheus, expr), f"dashboard query returned no series: {expr}"
        used = set()
        for rule in alert_rules():  # an alert's expression is empty while it does not fire
            await query(session, prometheus, rule["expr"])
            used |= metric_names(rule["expr"])
        for name in sorted(used - FIRST_FAILURE_SERIES):
            assert await query(session, prometheus, name), f"alert rules use {name}, which has no series"
        await assert_rules_evaluate_cleanly(session, prometheus)


async def assert_rules_evaluate_cleanly(session: aiohttp.ClientSession, url: str) -> None:
    async def evaluated() -> list[dict[str, Any]] | None:
        async with session.get(f"{url}/api/v1/rules") as resp:
            rules = [r for g in (await resp.json())["data"]["groups"] for r in g["rules"]]
        return rules if all(not r["lastEvaluation"].startswith("0001") for r in rules) else None

    rules = await wait_until(evaluated, timeout_s=30, interval_s=0.5, message="the rules were never evaluated")
    assert {r["name"] for r in rules} == {r["alert"] for r in alert_rules()}
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []
    firing = {r["name"] for r in rules if r["state"] == "firing"}
    assert "JobnodeNoLeader" not in firing and "JobnodeNodeDown" not in firing


async def assert_request_id_in_worker_logs(data_dir: Path, job_id: str, request_id: str) -> None:
    """The traced job's worker, on whichever node ran it, logged the submitting request's id."""
    def worker_lines() -> list[str]:
        found = []
        for log in data_dir.glob("node-*/node.log"):
            found += [line for line in log.read_text(errors="replace").splitlines()
                      if "job.completed" in line and job_id in line]
        return found

    lines = await wait_until(worker_lines, timeout_s=10, message=f"no worker logged job {job_id}")
    assert all(f"request_id={request_id}" in line for line in lines), lines
