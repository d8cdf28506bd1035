"""Cost as the work grows: the parts of the `scale` section that need clusters of their own.

- `wide`: a drain on a cluster of many nodes with many workers each (100 workers over 5 nodes
  by default), the same measurement as the one-node drain.
- `idle_gossip`: a gossip cluster of N nodes (9 by default) with no workers and no load, its
  CPU sampled for a while once it has settled: the cost of membership alone.

The 200,000-job drain runs on the workload cluster itself (tools.bench's `Bench.run_scale`),
so its cost per job compares with the base drain's in the same cluster.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tools.bench.cluster import ClusterPlan, DataServers, DevCluster, progress
from tools.bench.resources import CpuWatch
from tools.procfs import rss_mib

SETTLE_S = 5.0  # after start: elections, first gossip rounds and registrations are over


async def run_idle_gossip(servers: DataServers, work_dir: Any, *, nodes: int, seconds: float, python: str,
                          startup_timeout_s: float) -> dict[str, Any]:
    plan = ClusterPlan("idle-gossip", nodes, "gossip", 0, python=python)
    cluster = DevCluster.start(plan, servers, work_dir, startup_timeout_s=startup_timeout_s)
    try:
        progress(f"scale: idle {nodes}-node gossip cluster, CPU over {seconds:g}s")
        await asyncio.sleep(min(SETTLE_S, seconds))  # a settling time, not a synchronisation
        pids = {f"node-{i}": pid for i, pid in enumerate(cluster.node_pids, start=1)}
        async with CpuWatch({**pids, **servers.pids, "bench": os.getpid()}, every_s=0.5) as watch:
            await asyncio.sleep(seconds)  # the measurement window itself
        report = watch.report()
        node_shares = [share for name, share in report["cpu_share"].items() if name in pids and share is not None]
        return {
            "nodes": nodes, "workers_per_node": 0, "seconds": seconds,
            "cpu_share_per_node": {"mean": round(sum(node_shares) / len(node_shares), 4) if node_shares else None,
                                   "max": max(node_shares, default=None)},
            "cpu_share_all_nodes": round(sum(node_shares), 3) if node_shares else None,
            "rss_mib": {name: rss_mib(pid) for name, pid in pids.items()},
            **report,
        }
    finally:
        cluster.stop()
