"""The benchmark's arithmetic: percentiles, the store's lifecycle ceiling, profiles, targets, options."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys

from tools.bench import Bench, build_parser, main, node_python_path, sizes, stages
from tools.bench.ceiling import lifecycle_ceiling
from tools.bench.machine import cpu_over_run
from tools.bench.resources import MACHINE, STEAL, ResourceSampler, busiest, busy_share, cpu_ms_per_job, growth
from tools.procfs import MachineTimes, cpu_s, machine_times, rss_mib
from tools.bench.profile import top_costs
from tools.bench.workloads import percentiles_ms
from jobnode.observability.metrics import NodeMetrics
from tests.waiting import wait_until


def test_percentiles_are_nearest_rank_in_milliseconds():
    values = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentiles_ms(values) == {"p50": 50.0, "p95": 95.0, "p99": 99.0, "max": 100.0, "count": 100}
    assert percentiles_ms([])["p99"] is None


def test_the_lifecycle_ceiling_adds_the_time_of_each_write():
    ceiling = {"insert_docs_per_s": 1000.0, "update_docs_per_s": 500.0}
    assert lifecycle_ceiling(ceiling, 1, 1) == 333.3  # 1 ms + 2 ms per job
    assert lifecycle_ceiling(ceiling, 1, 0) == 1000.0


def test_a_profile_keeps_the_top_self_costs_and_leaves_the_spine_out(tmp_path):
    stacks = tmp_path / "node.txt"
    stacks.write_text("main (a.py:1);loop (b.py:2);encode (c.py:3) 60\n"
                      "main (a.py:1);loop (b.py:2);send (d.py:4) 30\n"
                      "main (a.py:1);write (e.py:5) 10\n")
    costs = top_costs(stacks, seconds=2.0)
    assert costs["samples"] == 100 and costs["busy_share"] == 0.5
    assert costs["top_self"][0] == {"function": "encode (c.py:3)", "share": 0.6}
    assert "main (a.py:1)" not in {row["function"] for row in costs["top_inclusive"]}


def test_quick_sizes_and_overrides():
    args = build_parser().parse_args(["--quick", "--drain-jobs", "7"])
    chosen = sizes(args)
    assert chosen["drain_jobs"] == 7 and chosen["ceiling_jobs"] == 1000 and chosen["failover_runs"] == 1
    assert sizes(build_parser().parse_args([]))["drain_jobs"] == 20000


def test_node_python_becomes_an_absolute_path_and_a_bad_one_is_refused(tmp_path, monkeypatch, capsys):
    # The nodes start in their own data folders: a relative interpreter path must not reach them.
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)  # as a venv's is: the link must be kept, not resolved
    monkeypatch.chdir(tmp_path)
    assert node_python_path("venv/bin/python") == str(venv_python)
    assert node_python_path("sh") == shutil.which("sh")  # a bare name is looked up on PATH
    (tmp_path / "notes.txt").write_text("not a program")
    assert node_python_path("notes.txt") is None and node_python_path("./notes.txt") is None
    assert main(["--node-python", "missing/python", "--quick"]) == 2
    assert "--node-python 'missing/python' is not an executable file" in capsys.readouterr().err


def test_targets_compare_each_figure_in_its_own_direction(tmp_path):
    bench = Bench(build_parser().parse_args([]), tmp_path)
    bench.report.update({
        "store_ceiling": {"insert_docs_per_s": 1000.0, "lifecycle_jobs_per_s": 100.0},
        "submit": {"batch": {"jobs_per_s": 950.0}},
        "drain": {"pipeline": {"jobs_per_s": 5000.0}, "durable": {"jobs_per_s": 80.0},
                  "rss_mib": {"peak": {"node-1": 90.0, "node-2": 160.0}}},
        "latency": {"submit_to_complete_ms": {"p99": 12.0}},
        "failover": {"first_dispatch_ms_median": 250.0},
        "steady": {"rss": {"node-1": {"growth_mib": 0.4}, "node-2": {"samples": 1}}},
    })
    targets = bench.targets()
    assert targets["drain_pipeline_jobs_per_s"]["met"] is True
    assert targets["drain_durable_share_of_lifecycle_ceiling"] == {"target": 0.9, "measured": 0.8, "met": False}
    assert targets["batch_submit_share_of_insert_ceiling"]["met"] is True
    assert targets["latency_p99_ms_at_200_per_s"]["met"] is False
    assert targets["raft_failover_median_ms"]["met"] is True
    assert targets["node_rss_mib_during_drain"] == {"target": 150, "measured": 160.0, "met": False}  # the worst node
    assert targets["steady_rss_growth_mib"]["met"] is True
    assert isinstance(bench.args, argparse.Namespace)


def test_the_round_two_targets_are_ratios_within_one_run(tmp_path):
    bench = Bench(build_parser().parse_args([]), tmp_path)
    bench.report.update({
        "store_ceiling": {"insert_ms_at_rate": {"p99": 11.0}},
        "latency": {"submit_to_complete_ms": {"p99": 13.5}},
        "latency_queue": {"submit_to_complete_ms": {"p99": 3.0}},
        "compare": {"saq": {"latency": {"submit_to_complete_ms": {"p99": 2.5}}},
                    "dramatiq": {"ratios": {"drain_pipeline": 1.25}}},
        "scale": {"drain": {"cost_per_job_vs_base": 1.1}},
    })
    targets = bench.targets()
    assert targets["latency_queue_p99_vs_saq"] == {"target": 1.5, "measured": 1.2, "met": True}
    assert targets["latency_store_p99_over_insert_p99_ms"] == {"target": 3, "measured": 2.5, "met": True}
    assert targets["drain_pipeline_vs_dramatiq"] == {"target": 1.3, "measured": 1.25, "met": False}
    assert targets["scale_cost_per_job_vs_base"]["met"] is True
    assert Bench(build_parser().parse_args([]), tmp_path).targets()["latency_queue_p99_vs_saq"]["met"] is None


def test_the_busiest_process_is_what_limited_a_section():
    shares = {"node-1": 0.97, "redis": 0.2, "bench": 0.1, MACHINE: 1.5, STEAL: 0.0}
    found = busiest(shares)
    assert found["process"] == "node-1" and found["cpu_share"] == 0.97
    assert found["machine_saturated"] is (1.5 >= 0.9 * (os.cpu_count() or 1))
    assert busiest({MACHINE: 1.0, "redis": None}) is None
    # CPU per job: the system under test only (nodes and servers), over the window's seconds.
    assert cpu_ms_per_job(shares, seconds=2.0, jobs=1000) == round((0.97 + 0.2) * 2.0, 3)
    assert cpu_ms_per_job({MACHINE: 1.0}, seconds=2.0, jobs=1000) is None


def test_a_profiled_drain_says_its_throughput_targets_were_disturbed(tmp_path):
    bench = Bench(build_parser().parse_args(["--profile", str(tmp_path / "prof")]), tmp_path)
    bench.report.update({"drain": {"pipeline": {"jobs_per_s": 2000.0}},
                         "latency": {"submit_to_complete_ms": {"p99": 9.0}}})
    targets = bench.targets()
    assert "measured under --profile" in targets["drain_pipeline_jobs_per_s"]["disturbed"]
    assert "disturbed" in targets["drain_durable_share_of_lifecycle_ceiling"]
    assert "disturbed" not in targets["latency_p99_ms_at_200_per_s"]  # measured after the profilers stop
    unprofiled = Bench(build_parser().parse_args([]), tmp_path)
    unprofiled.report.update({"drain": {"pipeline": {"jobs_per_s": 2000.0}}})
    assert "disturbed" not in unprofiled.targets()["drain_pipeline_jobs_per_s"]


def test_memory_growth_compares_the_first_and_the_last_minute():
    flat_then_up = [(t, 70.0) for t in range(0, 60, 5)] + [(t, 80.0) for t in range(540, 601, 5)]
    report = growth(flat_then_up)
    assert report["first_minute_mib"] == 70.0 and report["last_minute_mib"] == 80.0
    assert report["growth_mib"] == 10.0 and report["growth_mib_per_hour"] == 60.0 and report["max_mib"] == 80.0
    assert growth([(0, 70.0)]) == {"samples": 1}
    assert rss_mib(os.getpid()) > 1 and rss_mib(2**22 + 7) is None  # no such process
    assert cpu_s(os.getpid()) > 0 and cpu_s(2**22 + 7) is None


def test_cpu_share_is_cpu_seconds_per_wall_second_inside_the_window():
    samples = [(0.0, 1.0), (1.0, 1.5), (2.0, 2.5), (3.0, 2.6)]
    assert busy_share(samples, 1.0, 2.0) == 1.0  # a whole core from t=1 to t=2
    assert busy_share(samples, 0.0, 3.0) == 0.533
    assert busy_share(samples, 2.5, 2.9) == 0.1  # no two samples inside: the nearest ones around it
    assert busy_share(samples, 2.5, 3.5) is None  # nothing after the window yet


async def test_the_sampler_records_this_process_until_stopped():
    sampler = ResourceSampler({"me": os.getpid()}, every_s=0.01)
    sampler.mark("before")
    sampler.start()
    await wait_until(lambda: len(sampler.cpu["me"]) >= 3, timeout_s=5, message="no samples")
    await sampler.stop()
    count = len(sampler.samples["me"])
    assert sampler.marks["before"]["me"] > 1 and sampler.peak()["me"] >= sampler.marks["before"]["me"]
    assert sampler.cpu_share(float("-inf"), float("inf"))["me"] >= 0
    await asyncio.sleep(0.05)  # stopped: no more samples arrive
    assert len(sampler.samples["me"]) == count


async def test_the_sampler_follows_the_cpu_of_cpu_only_processes_and_of_the_machine():
    sampler = ResourceSampler({"me": os.getpid()}, every_s=0.01, cpu_only={"parent": os.getppid()})
    sampler.start()
    await wait_until(lambda: len(sampler.cpu[MACHINE]) >= 3, timeout_s=5, message="no machine samples")
    await sampler.stop()
    assert set(sampler.samples) == {"me"}  # a cpu_only process's memory is none of the report's business
    shares = sampler.cpu_share(float("-inf"), float("inf"))
    assert set(shares) == {"me", "parent", MACHINE, STEAL}
    # In cores, not a share of one nor a percentage; 10 ms samples of 10 ms clock ticks can
    # overshoot the core count a little on a loaded machine, hence the margin.
    assert 0 <= shares[STEAL] <= shares[MACHINE] <= os.cpu_count() * 1.5


def test_the_machine_cpu_over_a_run_is_a_share_of_all_its_cpu_time():
    start = MachineTimes(busy_s=10.0, steal_s=1.0, total_s=100.0)
    end = MachineTimes(busy_s=40.0, steal_s=1.5, total_s=140.0)  # 40 s of CPU time: 30 busy, 0.5 stolen
    assert cpu_over_run(start, end) == {"busy_share": 0.75, "steal_share": 0.0125}
    assert cpu_over_run(start, None) is None and cpu_over_run(end, start) is None
    now = machine_times()
    assert now is not None and 0 <= now.steal_s <= now.busy_s <= now.total_s


def test_the_submit_path_split_comes_from_a_nodes_own_histograms():
    metrics = NodeMetrics({"echo"})
    before = stages.parse(metrics.exposition().decode())
    for _ in range(98):
        metrics.submit_written("store_insert", 0.0025)  # in the (2, 3] ms bucket
    metrics.submit_written("store_insert", 0.04)  # (30, 50]
    metrics.submit_written("store_insert", 9.0)  # beyond the last finite bound
    metrics.submit_written("queue_enqueue", 0.0007)
    metrics.http_request("POST", "/api/v1/jobs", 201, 0.004)
    metrics.http_request("GET", "/api/v1/jobs", 200, 2.0)  # another route: not part of the split
    split = stages.between(before, stages.parse(metrics.exposition().decode()))

    insert = split["store_insert"]
    assert insert["count"] == 100
    assert insert["p50"]["bucket_ms"] == [2.0, 3.0] and 2.0 < insert["p50"]["ms"] <= 3.0
    assert insert["p99"]["bucket_ms"] == [30.0, 50.0]
    assert split["queue_enqueue"]["count"] == 1 and split["queue_enqueue"]["p99"]["bucket_ms"] == [0.5, 1.0]
    assert split["http_submit_handler"]["count"] == 1
    # The slowest write lies past every finite bound: the estimate says only "above 5 s".
    assert stages.quantile({0.005: 0.0, 5.0: 0.0, float("inf"): 1.0}, 0.99) == (5.0, 5.0, float("inf"))
    json.dumps(split, allow_nan=False)  # the report stays valid JSON
