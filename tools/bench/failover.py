"""Failover runs: a fresh cluster each time, measured by scripts/failover.py (kill -9 of the leader under load).

scripts/failover.py is what scripts/test-algorithms.sh uses; the bench runs the same
measurement rather than a second copy of it. A kill costs the cluster a node, so each of
the K runs gets a cluster of its own (on the same Redis and MongoDB servers).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.bench.cluster import BenchError, ClusterPlan, DataServers, DevCluster, progress

FAILOVER_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "failover.py"
CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def config_for(algorithm: str, nodes: int) -> Path | None:
    """The shipped timers for this algorithm and size (what test-algorithms.sh picks too)."""
    name = {"bully": "bully-2.env", "raft": "raft-5.env" if nodes >= 5 else "raft-3.env",
            "gossip": "gossip-10.env" if nodes >= 10 else "gossip-3.env"}[algorithm]
    path = CONFIGS / name
    return path if path.exists() else None


def measure_once(plan: ClusterPlan, servers: DataServers, work_dir: Path, *, rate_per_s: float,
                 startup_timeout_s: float, label: str) -> dict[str, Any]:
    if not FAILOVER_SCRIPT.exists():
        raise BenchError(f"{FAILOVER_SCRIPT} is missing: the failover measure needs a source checkout")
    cluster = DevCluster.start(plan, servers, work_dir, startup_timeout_s=startup_timeout_s)
    try:
        command = [sys.executable, str(FAILOVER_SCRIPT), "measure", "--cluster-file", str(cluster.cluster_file),
                   "--algorithm", plan.algorithm, "--rate", str(rate_per_s), "--warmup", "1.5",
                   "--after", "1.5", "--label", label]
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, timeout=300)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise BenchError(f"failover.py printed no result (exit {done.returncode})")
        return json.loads(lines[-1])
    finally:
        cluster.stop()


def run_failover(plan: ClusterPlan, servers: DataServers, work_dir: Path, *, runs: int, rate_per_s: float,
                 startup_timeout_s: float) -> dict[str, Any]:
    """K kills of the leader; the median ms from the kill to the first job a new leader dispatched."""
    results = []
    for k in range(1, runs + 1):
        progress(f"failover: run {k}/{runs} ({plan.nodes}-node {plan.algorithm})")
        results.append(measure_once(plan, servers, work_dir, rate_per_s=rate_per_s,
                                    startup_timeout_s=startup_timeout_s, label=f"failover {k}/{runs}"))

    def median_ms(key: str) -> float | None:
        values = [r[key] for r in results if r.get(key) is not None]
        return round(statistics.median(values) * 1000, 1) if values else None

    return {
        "algorithm": plan.algorithm,
        "nodes": plan.nodes,
        "config": str(plan.env_file) if plan.env_file else None,
        "runs": runs,
        "load_per_s": rate_per_s,
        "first_dispatch_ms_median": median_ms("first_dispatch_s"),
        "election_ms_median": median_ms("election_s"),
        "lease_ms_median": median_ms("lease_s"),
        "acknowledged_jobs_lost": sum(r["acked"] - r["completed"] for r in results),
        "each": results,
    }
