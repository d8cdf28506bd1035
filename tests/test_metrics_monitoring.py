"""monitoring/: alert rules and the Grafana dashboard use only metrics a node really serves.

The slow tests/test_prometheus.py evaluates every expression in a real Prometheus against a
3-node cluster; these checks are the fast half: file shapes, provisioning paths, names.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from jobnode.core.job import Job, JobSpec
from jobnode.storage.redis.queue import JobQueue
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.test_metrics import scrape, start_with_metrics

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = ROOT / "tests" / "monitoring" / "alerts_test.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "cluster.json"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = MONITORING / "grafana" / "provisioning" / "dashboards" / "jobnode.yml"

# Grafana fills these in; Prometheus needs a real duration in their place.
# Grafana's built-in variables, and the dashboard's own with "All" chosen.
GRAFANA_VARIABLES = {"$__rate_interval": "30s", "$__interval": "5s", "$__range": "5m", "$node": ".*", "$type": ".*"}
# Series Prometheus makes itself for every target, not the node.
SCRAPE_SERIES = {"up"}
# Labelled by what failed, so no series exists before the first failure (checked in test_metrics).
FIRST_FAILURE_SERIES = {"jobnode_storage_errors_total"}
METRIC_NAME = re.compile(r"\b((?:jobnode|process|python)_[a-z0-9_]+|up)\b(?!\s*\()")
PROMQL_WORDS = {"on", "by", "without", "group_left", "group_right", "and", "or", "unless", "ignoring", "bool"}


def dashboard_panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def dashboard_expressions() -> list[str]:
    """Every query of the dashboard, with Grafana's variables replaced for Prometheus."""
    exprs = []
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            exprs.append(expr)
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    # Label values ("dead") and label names live inside {...} or after by/on (...): drop those first.
    bare = re.sub(r'\{[^}]*\}', "", expr)
    bare = re.sub(r"\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    return {name for name in METRIC_NAME.findall(bare) if name not in PROMQL_WORDS}


def test_the_alerts_cover_what_the_issue_asks() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {"JobnodeNoLeader", "JobnodeLeaderFlapping", "JobnodeNodeDown", "JobnodeQueueGrowing",
            "JobnodeDeadLetterGrowing", "JobnodeJobFailureRatioHigh"} <= names
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    assert by_name["JobnodeNoLeader"]["for"] == "30s"
    assert by_name["JobnodeQueueGrowing"]["for"] == "10m"
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_the_dashboard_is_well_formed_and_uses_the_provisioned_datasource() -> None:
    document = json.loads(DASHBOARD.read_text())
    datasource = yaml.safe_load(DATASOURCES.read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090" and datasource["type"] == "prometheus"
    ids = [p["id"] for p in document["panels"]]
    assert len(ids) == len(set(ids)) and document["uid"] == "jobnode-cluster"
    cells: set[tuple[int, int]] = set()
    for panel in document["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
    # Imports into any Grafana: the data source is a variable, never the provisioned uid.
    variables = {variable["name"]: variable for variable in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert f'"uid": "{datasource["uid"]}"' not in json.dumps(document)
    for name, metric in (("node", "jobnode_node_info"), ("type", "jobnode_jobs_submitted_total")):
        assert variables[name]["datasource"]["uid"] == "${datasource}"
        assert variables[name]["query"]["query"] == f"label_values({metric}, {name if name == 'type' else 'node_id'})"
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"], panel["title"]


def test_per_node_queries_follow_the_node_variable_and_per_type_ones_the_type_variable() -> None:
    # Cluster facts every node reports alike, and stats over the whole cluster.
    cluster_wide = ("jobnode_queue_depth", "jobnode_outbox_", "jobnode_cluster_members", "jobnode_election_term",
                    "max(increase(jobnode_election_leader_changes_total[1h]))",
                    'up{job="jobnode"}')
    for panel in dashboard_panels():
        for target in panel["targets"]:
            expr = target["expr"]
            if not any(name in expr for name in cluster_wide):
                assert 'jobnode_node_info{node_id=~"$node"}' in expr, (panel["title"], expr)
            if "jobnode_jobs_" in expr or "jobnode_job_retries" in expr or "processing_duration" in expr:
                assert expr.count('type=~"$type"') == expr.count("jobnode_job"), (panel["title"], expr)


def test_the_dashboard_shows_what_the_issue_asks() -> None:
    exprs = " ".join(dashboard_expressions())
    for needed in ("jobnode_is_leader", "jobnode_election_leader_changes_total", "jobnode_cluster_members",
                   "jobnode_queue_depth", "jobnode_jobs_submitted_total", "jobnode_jobs_completed_total",
                   'status="failed"', "jobnode_job_wait_duration_seconds_bucket",
                   "jobnode_job_processing_duration_seconds_bucket", "jobnode_job_retries_total",
                   "jobnode_workers_active", "jobnode_workers", 'up{job="jobnode"}',
                   "jobnode_submit_write_duration_seconds_bucket", "jobnode_outbox_entries",
                   "jobnode_outbox_oldest_age_seconds"):
        assert needed in exprs, needed
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(jobnode_job_wait_duration_seconds_bucket" in exprs


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load(PROVIDERS.read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


async def test_every_metric_in_the_dashboard_and_alerts_is_served_by_a_node(start_node, redis_client,
                                                                           key_prefix) -> None:
    client, port = await start_with_metrics(start_node)
    await client.get("/health")  # HTTP series appear with the first request
    # A job no node can run: the unroutable gauge has a series only while there is one.
    await JobQueue(redis_client, key_prefix).enqueue([Job.new(JobSpec(type="nowhere", queue="nowhere"))])
    served = {name for name, _ in await scrape(port)} | SCRAPE_SERIES | FIRST_FAILURE_SERIES
    used = set()
    for expr in dashboard_expressions() + [rule["expr"] for rule in alert_rules()]:
        used |= metric_names(expr)
    assert "jobnode_queue_depth" in used and "up" in used  # the name extraction works
    assert used - served == set(), "metrics used by monitoring/ that no node serves"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    for command in (["promtool", "check", "rules", str(ALERTS)], ["promtool", "test", "rules", str(ALERT_TESTS)]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)")
async def test_promtool_finds_nothing_to_lint_in_a_node_s_metrics(start_node) -> None:
    client, port = await start_with_metrics(start_node)
    await client.post("/api/v1/jobs", json={"type": "echo"})  # job and HTTP series appear with use
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            text = await resp.text()
    result = await asyncio.to_thread(subprocess.run, ["promtool", "check", "metrics"], input=text,
                                     capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        f"promtool check metrics:\n{result.stdout}{result.stderr}")


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)")
def test_promtool_parses_every_dashboard_query(tmp_path) -> None:
    # promtool parses the expressions of recording rules: one rule per dashboard query.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{index}", "expr": expr} for index, expr in enumerate(dashboard_expressions())]}]}
    rules_file = tmp_path / "dashboard_rules.yml"
    rules_file.write_text(yaml.safe_dump(rules))
    result = subprocess.run(["promtool", "check", "rules", str(rules_file)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
