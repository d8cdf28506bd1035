"""The benchmark's arithmetic: percentiles, the store's lifecycle ceiling, profiles, targets, options."""

from __future__ import annotations

import argparse

from jobnode.bench import Bench, build_parser, sizes
from jobnode.bench.ceiling import lifecycle_ceiling
from jobnode.bench.profile import top_costs
from jobnode.bench.workloads import percentiles_ms


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


def test_targets_compare_each_figure_in_its_own_direction(tmp_path):
    bench = Bench(build_parser().parse_args([]), tmp_path)
    bench.report.update({
        "store_ceiling": {"insert_docs_per_s": 1000.0, "lifecycle_jobs_per_s": 100.0},
        "submit": {"batch": {"jobs_per_s": 950.0}},
        "drain": {"pipeline": {"jobs_per_s": 5000.0}, "durable": {"jobs_per_s": 80.0}},
        "latency": {"submit_to_complete_ms": {"p99": 12.0}},
        "failover": {"first_dispatch_ms_median": 250.0},
    })
    targets = bench.targets()
    assert targets["drain_pipeline_jobs_per_s"]["met"] is True
    assert targets["drain_durable_share_of_lifecycle_ceiling"] == {"target": 0.9, "measured": 0.8, "met": False}
    assert targets["batch_submit_share_of_insert_ceiling"]["met"] is True
    assert targets["latency_p99_ms_at_200_per_s"]["met"] is False
    assert targets["raft_failover_median_ms"]["met"] is True
    assert isinstance(bench.args, argparse.Namespace)
