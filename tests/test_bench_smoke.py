"""A tiny run of scripts/bench.py end to end, so the benchmark never rots (the full run never runs in CI).

It starts real servers and node processes and kills a raft leader, hence `slow`. Timing
figures on a shared CI box mean nothing, so only their presence and sanity are asserted.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--ceiling-jobs", "500", "--single-jobs", "40", "--concurrency", "8", "--batch-jobs", "500",
        "--drain-jobs", "300", "--rate", "40", "--latency-seconds", "1.5", "--failover-runs", "1",
        "--steady-seconds", "2", "--timeout", "180",
        "--scale-jobs", "300", "--wide-jobs", "200", "--wide-nodes", "2", "--wide-workers", "2",
        "--idle-nodes", "3", "--idle-seconds", "1", "--history-jobs", "300", "--history-steady-seconds", "2"]
# The peers are in the 'bench' extra, not in 'test': compared against only where installed.
HAS_ARQ = importlib.util.find_spec("arq") is not None
HAS_CELERY = importlib.util.find_spec("celery") is not None
HAS_DRAMATIQ = importlib.util.find_spec("dramatiq") is not None
HAS_SAQ = importlib.util.find_spec("saq") is not None


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    work_dir = tmp_path_factory.mktemp("bench")
    peers = [arg for peer, installed in (("arq", HAS_ARQ), ("celery-mongo", HAS_CELERY), ("dramatiq", HAS_DRAMATIQ),
                                         ("saq", HAS_SAQ)) if installed for arg in ("--compare", peer)]
    argv = TINY + peers + ["--work-dir", str(work_dir)]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=550)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout)  # stdout is one JSON object and nothing else


def positive(value) -> bool:
    return isinstance(value, (int, float)) and value > 0


def ordered_percentiles(block: dict, count: int) -> bool:
    return block["count"] == count and 0 <= block["p50"] <= block["p95"] <= block["p99"] <= block["max"]


@pytest.mark.timeout(600)
def test_the_report_has_every_section_with_sane_values(report):
    ceiling = report["store_ceiling"]
    assert ceiling["documents"] == 500 and "status_created_id" in ceiling["indexes"]
    assert positive(ceiling["insert_docs_per_s"]) and positive(ceiling["update_docs_per_s"])
    assert 0 < ceiling["lifecycle_jobs_per_s"] <= ceiling["insert_docs_per_s"]

    assert positive(report["submit"]["single"]["jobs_per_s"]) and positive(report["submit"]["batch"]["jobs_per_s"])
    assert ordered_percentiles(report["submit"]["single"]["ack_ms"], 40)

    drain = report["drain"]
    assert drain["completed"] == drain["jobs"] == 300
    assert positive(drain["pipeline"]["jobs_per_s"]) and positive(drain["durable"]["jobs_per_s"])
    # Workers finish a job before its completion reaches MongoDB (1 ms clock resolution).
    assert drain["durable"]["seconds"] >= drain["pipeline"]["seconds"] - 0.002

    writes = report["writes_per_job"]
    assert writes["complete"] is True
    assert writes["documents_per_job"]["jobs"]["insert"] == 1.0  # each job is inserted exactly once
    assert 1.0 <= writes["documents_per_job"]["jobs"]["update"] < 4  # at least its completion

    latency = report["latency"]
    assert ordered_percentiles(latency["submit_to_complete_ms"], latency["jobs"])
    assert latency["submit_to_complete_ms"]["p50"] >= latency["submit_ack_ms"]["p50"] - 1
    # The nodes' own split of the same submits (the warm-up job is one more batch).
    node_stages = latency["node_stages"]
    for stage in ("store_insert", "queue_enqueue", "http_submit_handler"):
        assert node_stages[stage]["count"] >= latency["jobs"] // 10, stage
        assert node_stages[stage]["p50"]["ms"] > 0, stage

    queued = report["latency_queue"]  # the same workload, acknowledged once Redis holds each job
    assert queued["durability"] == "queue" and ordered_percentiles(queued["submit_to_complete_ms"], queued["jobs"])

    scale = report["scale"]
    assert scale["drain"]["completed"] == scale["drain"]["jobs"] == 300
    assert positive(scale["drain"]["cpu_ms_per_job"]) and positive(scale["drain"]["cost_per_job_vs_base"])
    assert positive(scale["drain"]["rss_mib"]["peak"]["node-1"])
    assert scale["wide"]["workers"] == 4 and scale["wide"]["completed"] == 200
    assert set(scale["wide"]["rss_mib"]["peak"]) == {"node-1", "node-2"}
    idle = scale["idle_gossip"]
    assert idle["nodes"] == 3 and 0 <= idle["cpu_share_all_nodes"] < 3
    assert idle["busiest"]["process"] in {"node-1", "node-2", "node-3", "redis", "mongodb", "bench"}

    history = report["history"]
    assert history["history_jobs"] == 300 and set(history["p99_ratio"]) == set(history["empty"])
    steady = history["retention_steady"]
    assert steady["acknowledged"] + steady["refused"] == steady["offered"] > 0 and steady["samples"]

    memory = drain["rss_mib"]
    assert positive(memory["queued"]["node-1"]) and memory["peak"]["node-1"] >= memory["queued"]["node-1"]
    assert set(drain["cpu_share"]) == {"pipeline", "durable"}
    assert set(drain["cpu_share"]["pipeline"]) == {"node-1", "redis", "mongodb", "bench", "machine", "steal"}
    # Each section names what limited it: the process that used the most CPU.
    assert drain["busiest"]["pipeline"]["process"] in {"node-1", "redis", "mongodb", "bench"}
    assert report["latency"]["busiest"]["process"] in {"node-1", "redis", "mongodb", "bench"}
    steady = report["steady"]
    assert steady["acknowledged"] + steady["refused"] == steady["offered"] > 0
    assert positive(steady["rss"]["node-1"]["max_mib"])

    failover = report["failover"]
    assert failover["algorithm"] == "raft" and failover["runs"] == 1
    assert positive(failover["first_dispatch_ms_median"])
    assert failover["acknowledged_jobs_lost"] == 0

    assert set(report["targets"]) >= {"drain_pipeline_jobs_per_s", "raft_failover_median_ms",
                                      "node_rss_mib_during_drain", "steady_rss_growth_mib"}
    machine = report["machine"]
    assert machine["cpus"] >= 1 and report["settings"]["node"]["worker_count"] == 10
    assert positive(machine["speed_check_ms"]["at_start"]) and positive(machine["speed_check_ms"]["at_end"])
    assert 0 < machine["cpu_over_run"]["busy_share"] <= 1
    assert "secret" not in json.dumps(report["settings"]["cluster_environment"]).lower()


@pytest.mark.parametrize("peer, installed", [("arq", HAS_ARQ), ("celery-mongo", HAS_CELERY),
                                             ("dramatiq", HAS_DRAMATIQ), ("saq", HAS_SAQ)])
@pytest.mark.timeout(600)
def test_a_comparison_runs_the_same_workloads(report, peer, installed):
    if not installed:
        pytest.skip(f"{peer} is in the 'bench' extra")
    other = report["compare"][peer]
    assert other["drain"]["jobs"] == 300 and positive(other["drain"]["pipeline"]["jobs_per_s"])
    assert ordered_percentiles(other["latency"]["submit_to_complete_ms"], other["latency"]["jobs"])
    assert positive(other["ratios"]["drain_pipeline"]) and positive(other["ratios"]["latency_p99"])
