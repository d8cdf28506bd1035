"""A real Prometheus scrapes a real 3-node `jobnode dev` cluster; every monitoring query is evaluated.

Needs the `prometheus` and `promtool` binaries (Debian package `prometheus`, which .ci/run
installs); without them the test skips and says so. The flow, as an operator would see it:
start the cluster, point Prometheus at the nodes' metrics URLs from cluster.json (with
monitoring/alerts.yml loaded), run jobs that complete, retry and fail, then ask Prometheus
for every expression of the Grafana dashboard and of the alert rules.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from jobnode.api.request_ids import REQUEST_ID_HEADER
from jobnode.client import AsyncClient
from jobnode.embedded import free_port
from tests.test_metrics_monitoring import ALERTS, alert_rules, dashboard_expressions, metric_names
from tests.waiting import wait_until

NODES = 3
SCRAPE_INTERVAL = "1s"
MISSING = [tool for tool in ("prometheus", "promtool") if shutil.which(tool) is None]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(240),
    pytest.mark.skipif(bool(MISSING), reason=f"{' and '.join(MISSING)} not installed: install the Debian "
                       "package `prometheus` (.ci/run does: apt-get install --no-install-recommends prometheus)"),
]


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


@pytest.fixture
def dev_cluster(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """`jobnode dev --nodes 3` with embedded Redis and SecantusDB; yields cluster.json."""
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
            yield {"data_dir": data_dir, "log": tmp_path / "dev.log", "process": process}
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
    cluster_file = dev_cluster["data_dir"] / "cluster.json"
    await wait_until(cluster_file.exists, timeout_s=120, interval_s=0.2,
                     message=f"jobnode dev never wrote cluster.json; see {dev_cluster['log']}")
    cluster = json.loads(cluster_file.read_text())
    dev_cluster["cluster"] = cluster
    targets = [node["metrics_url"].removeprefix("http://").removesuffix("/metrics") for node in cluster["nodes"]]
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


async def run_jobs(api_url: str) -> tuple[str, int]:
    """Jobs that complete, retry and dead-letter; returns the id of the one traced by request id."""
    async with AsyncClient(api_url) as client:
        jobs = [await client.submit("echo", {"n": i}) for i in range(6)]
        jobs += [await client.submit("sleep", {"seconds": 0.2}) for _ in range(3)]
        jobs.append(await client.submit("sleep", {"seconds": 0, "fail": True}, max_retries=1))
        jobs.append(await client.submit("sleep", {"seconds": 0, "fail_permanently": True}))
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{api_url}/api/v1/jobs", json={"type": "echo"},
                                    headers={REQUEST_ID_HEADER: "prometheus-test-trace"}) as resp:
                assert resp.status == 201 and resp.headers[REQUEST_ID_HEADER] == "prometheus-test-trace"
                traced = await resp.json()
        jobs.append(traced)
        for job in jobs:
            done = await client.wait(job["id"], timeout_s=60)
            assert done["status"] in ("completed", "failed"), done
    return traced["id"], len(jobs)


async def test_prometheus_evaluates_every_dashboard_and_alert_expression(dev_cluster, prometheus):
    promtool("check", "rules", str(ALERTS))
    cluster = dev_cluster["cluster"]
    traced_id, submitted = await run_jobs(cluster["nodes"][0]["url"])

    async with aiohttp.ClientSession() as session:
        async def scraped_everything() -> bool:
            up = await query(session, prometheus, 'sum(up{job="jobnode"})')
            done = await query(session, prometheus, "sum(jobnode_jobs_submitted_total)")
            return bool(up and float(up[0]["value"][1]) == NODES and done
                        and float(done[0]["value"][1]) == submitted)

        await wait_until(scraped_everything, timeout_s=60, interval_s=0.5,
                         message="prometheus never saw all nodes up and every submitted job")

        leaders = await query(session, prometheus, "sum(jobnode_is_leader)")
        assert float(leaders[0]["value"][1]) == 1, "exactly one node holds the leader lease"
        for expr in dashboard_expressions():  # every panel should show something
            assert await query(session, prometheus, expr), f"dashboard query returned no series: {expr}"
        used = set()
        for rule in alert_rules():  # an alert's expression is empty while it does not fire
            await query(session, prometheus, rule["expr"])
            used |= metric_names(rule["expr"])
        for name in sorted(used):
            assert await query(session, prometheus, name), f"alert rules use {name}, which has no series"
        await assert_rules_evaluate_cleanly(session, prometheus)

    await assert_request_id_in_worker_logs(dev_cluster["data_dir"], traced_id)


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


async def assert_request_id_in_worker_logs(data_dir: Path, job_id: str) -> None:
    """The traced job's worker, on whichever node ran it, logged the submitting request's id."""
    def worker_lines() -> list[str]:
        found = []
        for log in data_dir.glob("node-*/node.log"):
            found += [line for line in log.read_text(errors="replace").splitlines()
                      if "job.completed" in line and job_id in line]
        return found

    lines = await wait_until(worker_lines, timeout_s=10, message=f"no worker logged job {job_id}")
    assert all("request_id=prometheus-test-trace" in line for line in lines), lines
