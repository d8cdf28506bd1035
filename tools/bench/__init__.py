"""The jobnode benchmark (`scripts/bench.py`): one run, one JSON object on stdout.

A run starts its own Redis and SecantusDB (unless --redis-url/--mongodb-uri are given),
measures the store's own ceiling for job documents, starts a `jobnode dev` cluster and
runs the workloads through its HTTP API (submit, drain, latency, counting MongoDB writes
and sampling the nodes' memory on the way; with --steady-seconds also a long steady run for
memory growth), optionally the same drain and latency through arq, then kills the leader of
fresh raft clusters K times (failover), and measures the event stream on a 2-node cluster
(subscribers, their memory, delivery). Progress goes to stderr. docs/benchmark.md says
how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.bench import stages
from tools.bench.ceiling import lifecycle_ceiling, measure_store_ceiling
from tools.bench.cluster import BenchError, ClusterPlan, DataServers, DevCluster, progress, redact
from tools.bench.events import run_events
from tools.bench.failover import config_for, run_failover
from tools.bench.history import run_history, run_retention_steady
from tools.bench.machine import MachineWatch
from tools.bench.resources import CpuWatch, ResourceSampler, busiest, cpu_ms_per_job, run_steady
from tools.bench.profile import Profiler
from tools.bench.redis_work import ScriptTimes, redis_mark, redis_work
from tools.bench.routing import run_routing
from tools.bench.scale import run_idle_gossip
from tools.bench.workloads import ClusterLoad, run_drain, run_latency, run_submit
from tools.bench.writes import mark, writes_between

SECTIONS = ("store_ceiling", "submit", "drain", "latency", "failover", "routing", "events", "scale", "history")
COMPARE = ("arq", "celery-mongo", "dramatiq", "saq")
PEER_MODULES = {"arq": "arq", "celery-mongo": "celery", "dramatiq": "dramatiq", "saq": "saq"}
# Sizes: full run, --quick (under 2 minutes on an idle 2-core machine).
SIZES = {
    "full": {"ceiling_jobs": 20000, "single_jobs": 5000, "batch_jobs": 20000, "drain_jobs": 20000,
             "latency_s": 30.0, "failover_runs": 5, "routing_jobs": 30000, "subscribers": 1000, "events_s": 30.0,
             "scale_jobs": 200000, "wide_jobs": 20000, "idle_s": 30.0,
             "history_jobs": 1_000_000, "history_steady_s": 600.0},
    "quick": {"ceiling_jobs": 1000, "single_jobs": 300, "batch_jobs": 1000, "drain_jobs": 1000,
              "latency_s": 3.0, "failover_runs": 1, "routing_jobs": 3000, "subscribers": 1000, "events_s": 3.0,
              "scale_jobs": 5000, "wide_jobs": 1000, "idle_s": 3.0,
              "history_jobs": 5000, "history_steady_s": 5.0},
}
TARGETS = {"drain_pipeline_jobs_per_s": 4200, "drain_durable_share_of_lifecycle_ceiling": 0.9,
           "latency_p99_ms_at_200_per_s": 10, "batch_submit_share_of_insert_ceiling": 0.9,
           "raft_failover_median_ms": 300, "node_rss_mib_during_drain": 150,
           # "No growth" with room for allocator noise: the last minute against the first.
           "steady_rss_growth_mib": 10,
           # Named queues: dispatch with 3 queues x 100 workers costs Redis at most 1.5x one queue
           # of 300, and 10x the workers per queue at most 1.5x (O(log n) in workers).
           "routing_three_queues_vs_one": 1.5, "routing_thousand_vs_hundred_workers": 1.5,
           # The event stream: 1,000 subscribers on one node, each costing it little, and a
           # completion at a subscriber on another node within a few event-loop turns.
           "events_subscribers": 1000, "events_rss_mib_per_1000_subscribers": 64,
           "events_delivery_p50_ms": 20, "events_delivery_p99_ms": 100,
           # A million finished jobs in the store change the API's costs by at most a fifth.
           "history_stats_p99_ratio": 1.2, "history_failed_page_p99_ratio": 1.2,
           "history_submit_p99_ratio": 1.2,
           # Durability `queue`: submit→complete p99 at 200/s at most 1.5x SAQ's in the same run;
           # `store`: at most the store's own insert p99 at that rate + 3 ms.
           "latency_queue_p99_vs_saq": 1.5, "latency_store_p99_over_insert_p99_ms": 3,
           # The dispatch path against dramatiq's, same drain, same run.
           "drain_pipeline_vs_dramatiq": 1.3,
           # Cost as the backlog grows: CPU per job of a 200,000-job drain against the 20,000-job one.
           "scale_cost_per_job_vs_base": 1.2}
# py-spy (a recorder per process watched) and the Redis slow log at a 0 µs threshold slow the drain
# they watch (a 20,000-job drain ran at about half speed watched), so their targets are marked as disturbed.
DISTURBED_BY_PROFILING = ("drain_pipeline_jobs_per_s", "drain_durable_share_of_lifecycle_ceiling")
PROFILING_NOTE = "measured under --profile, which slows the drain: take the target figures from a run without it"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/bench.py", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="small sizes: finishes in about 2 minutes")
    add("--nodes", type=int, default=1, help="nodes of the workload cluster (default 1)")
    add("--algorithm", choices=("bully", "raft", "gossip"), default="raft", help="its election algorithm")
    add("--workers", type=int, default=10, help="workers per node (default 10, WORKER_COUNT's default)")
    add("--redis-url", help="use this Redis instead of an embedded one")
    add("--mongodb-uri", help="use this MongoDB instead of an embedded SecantusDB")
    add("--compare", action="append", choices=COMPARE, default=[], help="also run the workloads through a peer")
    add("--celery-concurrency", type=int, default=2, help="prefork processes of the Celery worker (default 2)")
    add("--node-python", default=sys.executable,
        help="the Python the cluster's nodes run on (default: this one). The peers need the bench extra "
             "(redis-py < 6); with this the nodes can run on jobnode's own install in the same run")
    add("--skip", action="append", choices=SECTIONS, default=[], help="leave a section out (repeatable)")
    add("--ceiling-jobs", type=int, help="documents for store_ceiling")
    add("--single-jobs", type=int, help="jobs submitted one per request")
    add("--concurrency", type=int, default=32, help="single submits in flight (default 32)")
    add("--batch-jobs", type=int, help="jobs submitted in batches of 500")
    add("--batch-concurrency", type=int, default=2, help="batch requests in flight (default 2)")
    add("--drain-jobs", type=int, help="jobs of the drain")
    add("--rate", type=float, default=200.0, help="offered jobs/s of the latency workload (default 200)")
    add("--latency-seconds", type=float, help="how long the latency workload offers load")
    add("--steady-seconds", type=float, default=0.0,
        help="also a steady run this long at --rate, for memory growth (600 for the 10-minute check)")
    add("--failover-runs", type=int, help="K: leader kills, each on a fresh cluster (median reported)")
    add("--failover-nodes", type=int, default=3, help="nodes of each failover cluster (default 3)")
    add("--failover-algorithm", choices=("bully", "raft", "gossip"), default="raft")
    add("--failover-rate", type=float, default=20.0, help="jobs/s submitted during a failover (default 20)")
    add("--subscribers", type=int, help="event stream subscribers opened on one node (default 1000)")
    add("--events-seconds", type=float, help="how long the events section offers load at --rate")
    add("--history-jobs", type=int, help="finished job records of the history section (default 1,000,000)")
    add("--history-steady-seconds", type=float,
        help="the history section's steady run with a 1-minute retention (0: none)")
    add("--scale-jobs", type=int, help="scale: jobs of the large drain on the workload cluster (0: none)")
    add("--wide-nodes", type=int, default=5, help="scale: nodes of the wide cluster (default 5)")
    add("--wide-workers", type=int, default=20, help="scale: workers per node of the wide cluster (default 20)")
    add("--wide-jobs", type=int, help="scale: jobs of the wide cluster's drain (0: no wide cluster)")
    add("--idle-nodes", type=int, default=9, help="scale: nodes of the idle gossip cluster (default 9)")
    add("--idle-seconds", type=float, help="scale: how long the idle gossip cluster's CPU is sampled (0: none)")
    add("--profile", type=Path, metavar="DIR", help="py-spy the node(s) and SecantusDB during the drain")
    add("--work-dir", type=Path, help="where servers and clusters keep their files (default: a temp dir)")
    add("--timeout", type=float, default=600.0, help="limit of each wait, seconds (default 600)")
    add("--startup-timeout", type=float, default=120.0, help="limit for a cluster to start, seconds")
    return parser


def sizes(args: argparse.Namespace) -> dict[str, Any]:
    chosen = dict(SIZES["quick" if args.quick else "full"])
    overrides = {"ceiling_jobs": args.ceiling_jobs, "single_jobs": args.single_jobs,
                 "batch_jobs": args.batch_jobs, "drain_jobs": args.drain_jobs,
                 "latency_s": args.latency_seconds, "failover_runs": args.failover_runs,
                 "subscribers": args.subscribers, "events_s": args.events_seconds, "scale_jobs": args.scale_jobs,
                 "wide_jobs": args.wide_jobs, "idle_s": args.idle_seconds, "history_jobs": args.history_jobs,
                 "history_steady_s": args.history_steady_seconds}
    chosen.update({name: value for name, value in overrides.items() if value is not None})
    return chosen


def node_settings(environment: dict[str, str]) -> dict[str, Any]:
    """Every node setting the cluster ran with, as the node itself resolves them (secrets hidden)."""
    from jobnode.core.settings import Settings

    settings = Settings.from_env({**environment, "NODE_ID": "node-1"}, env_file=None)
    shown = {}
    for name, value in dataclasses.asdict(settings).items():
        if any(word in name for word in ("secret", "password")):
            value = "***" if value else value
        elif isinstance(value, str) and "://" in value:
            value = redact(value)
        shown[name] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
    return shown


class Bench:
    """One benchmark run: its options, its servers, and the report it builds."""

    def __init__(self, args: argparse.Namespace, work_dir: Path) -> None:
        self.args = args
        self.work_dir = work_dir
        self.sizes = sizes(args)
        self.machine = MachineWatch(args.node_python)
        self.report: dict[str, Any] = {"benchmark": "jobnode", "command": sys.argv, "machine": self.machine.info}

    def wanted(self, section: str) -> bool:
        return section not in self.args.skip

    async def run(self) -> dict[str, Any]:
        began = time.monotonic()
        oplog = 20 * (self.sizes["drain_jobs"] + self.sizes["batch_jobs"]) + 100_000
        if self.wanted("scale"):
            oplog += 20 * (self.sizes["scale_jobs"] + self.sizes["wide_jobs"])
        servers = DataServers.start(self.work_dir, self.args.redis_url, self.args.mongodb_uri, oplog)
        self.servers_pids = servers.pids
        try:
            self.report["servers"] = {"redis": redact(servers.redis_url), "mongodb": redact(servers.mongodb_uri),
                                      "embedded": not (self.args.redis_url or self.args.mongodb_uri)}
            if self.wanted("store_ceiling"):
                progress(f"store_ceiling: {self.sizes['ceiling_jobs']} job documents")
                self.report["store_ceiling"] = await measure_store_ceiling(
                    servers.mongodb_uri, f"bench_ceiling_{os.getpid()}", self.sizes["ceiling_jobs"],
                    rate_per_s=self.args.rate, latency_s=self.sizes["latency_s"])
            await self.run_cluster_workloads(servers)
            await self.run_comparisons(servers)
            if self.wanted("failover"):
                self.run_failovers(servers)
            if self.wanted("routing"):
                progress(f"routing: dispatch of {self.sizes['routing_jobs']} jobs per queue layout")
                self.report["routing"] = await run_routing(servers.redis_url, jobs=self.sizes["routing_jobs"])
            if self.wanted("events"):
                await self.run_events(servers)
            if self.wanted("history"):
                await self.run_history(servers)
            if self.wanted("scale"):
                await self.run_scale_clusters(servers)
        finally:
            servers.stop()
        self.finish_report(time.monotonic() - began)
        return self.report

    async def run_cluster_workloads(self, servers: DataServers) -> None:
        if not any(self.wanted(s) for s in ("submit", "drain", "latency", "scale")):
            return
        a, s = self.args, self.sizes
        plan = ClusterPlan("workload", a.nodes, a.algorithm, a.workers, python=a.node_python)
        cluster = DevCluster.start(plan, servers, self.work_dir, startup_timeout_s=a.startup_timeout)
        self.report["settings"] = {"bench": {**vars(a), **s, "profile": str(a.profile) if a.profile else None,
                                             "work_dir": str(self.work_dir)},
                                   "cluster_environment": {k: redact(v) for k, v in cluster.environment.items()},
                                   "node": node_settings(cluster.environment)}
        load = ClusterLoad(cluster.urls, servers.mongodb_uri, cluster.database, servers.redis_url,
                           cluster.environment["REDIS_KEY_PREFIX"], timeout_s=a.timeout)
        try:
            await self.run_workloads(load, servers, cluster)
        finally:
            await load.close()
            cluster.stop()

    async def run_workloads(self, load: ClusterLoad, servers: DataServers, cluster: DevCluster) -> None:
        a, s = self.args, self.sizes
        if self.wanted("submit"):
            async with CpuWatch(self.cpu_pids(cluster)) as watch:
                self.report["submit"] = await run_submit(load, single=s["single_jobs"], concurrency=a.concurrency,
                                                         batch_jobs=s["batch_jobs"],
                                                         batch_concurrency=a.batch_concurrency)
            self.report["submit"].update(watch.report())
        if self.wanted("drain"):
            profiler = self.profiler(servers, cluster)
            before = await mark(load.mongo)
            self.report["drain"] = await self.measured_drain(load, servers, cluster, s["drain_jobs"], profiler)
            self.report["writes_per_job"] = await writes_between(load.mongo, before, await mark(load.mongo),
                                                                 cluster.database, s["drain_jobs"])
            if profiler:
                self.report["profile"] = profiler.report()
        if self.wanted("latency"):
            self.report["latency"] = await self.latency(load, cluster)
            self.report["latency_queue"] = await self.latency(load, cluster, durability="queue")
        if self.wanted("scale") and s["scale_jobs"] > 0:
            progress(f"scale: drain of {s['scale_jobs']} jobs on the workload cluster")
            big = await self.measured_drain(load, servers, cluster, s["scale_jobs"])
            base = self.report.get("drain", {})
            big["cost_per_job_vs_base"] = _ratio(big.get("cpu_ms_per_job"), base.get("cpu_ms_per_job"))
            big["seconds_per_job_vs_base"] = _ratio(_dig(base, ("pipeline", "jobs_per_s")),
                                                    _dig(big, ("pipeline", "jobs_per_s")))
            big["base_jobs"] = base.get("jobs")
            self.report.setdefault("scale", {})["drain"] = big
        if a.steady_seconds > 0:
            self.report["steady"] = await run_steady(load, self.node_pids(cluster), rate_per_s=a.rate,
                                                     duration_s=a.steady_seconds)

    async def measured_drain(self, load: ClusterLoad, servers: DataServers, cluster: DevCluster, jobs: int,
                             profiler: Profiler | None = None) -> dict[str, Any]:
        """One drain of `jobs` with the nodes' memory, every process's CPU share and Redis's work."""
        a = self.args
        batch_rate = self.report.get("submit", {}).get("batch", {}).get("jobs_per_s", 500.0)
        redis_before = await redis_mark(load.redis)
        script_times = ScriptTimes(load.redis) if profiler else None
        if script_times:
            await script_times.start()
        memory = ResourceSampler(self.node_pids(cluster), every_s=0.05 if jobs <= 50_000 else 0.25,
                                 cpu_only={**servers.pids, "bench": os.getpid()})
        memory.mark("before_queueing")
        memory.start()
        started_at: list[float] = []

        def at_start() -> None:
            started_at.append(time.monotonic())
            memory.mark("queued")
            if profiler:
                profiler.start()

        def at_end() -> None:
            if profiler:
                profiler.stop()
            memory.mark("drained")

        try:
            drain = await run_drain(load, jobs=jobs, batch_concurrency=a.batch_concurrency,
                                    expected_submit_per_s=batch_rate, while_draining=(at_start, at_end))
        finally:
            await memory.stop()
        drain["rss_mib"] = {**memory.marks, "peak": memory.peak(), "workers_per_node": cluster.plan.workers}
        if started_at:
            begin = started_at[0]
            drain["cpu_share"] = {
                "pipeline": memory.cpu_share(begin, begin + drain["pipeline"]["seconds"]),
                "durable": memory.cpu_share(begin, begin + drain["durable"]["seconds"])}
            drain["busiest"] = {window: busiest(shares) for window, shares in drain["cpu_share"].items()}
            drain["cpu_ms_per_job"] = cpu_ms_per_job(drain["cpu_share"]["pipeline"], drain["pipeline"]["seconds"],
                                                     jobs)
        drain["redis"] = redis_work(redis_before, await redis_mark(load.redis), jobs)
        if script_times:
            drain["redis"]["by_command"] = await script_times.stop(jobs)
        return drain

    async def latency(self, load: ClusterLoad, cluster: DevCluster, durability: str | None = None) -> dict[str, Any]:
        """The fixed-rate workload, with the nodes' own split of the submit path over it."""
        before = await stages.scrape(cluster.metrics_urls)
        async with CpuWatch(self.cpu_pids(cluster)) as watch:
            report = await run_latency(load, rate_per_s=self.args.rate, duration_s=self.sizes["latency_s"],
                                       durability=durability)
        report.update(watch.report())
        after = await stages.scrape(cluster.metrics_urls) if before is not None else None
        if after is not None:  # None also when `before` was
            report["node_stages"] = {**stages.between(before, after),
                                     "estimated_from": "the nodes' histogram buckets (tools.bench.stages)"}
        return report

    def cpu_pids(self, cluster: DevCluster) -> dict[str, int]:
        """Every process a workload's CPU shares follow: the nodes, the embedded servers, the bench."""
        return {**self.node_pids(cluster), **self.servers_pids, "bench": os.getpid()}

    @staticmethod
    def node_pids(cluster: DevCluster) -> dict[str, int]:
        return {f"node-{i}": pid for i, pid in enumerate(cluster.node_pids, start=1)}

    def profiler(self, servers: DataServers, cluster: DevCluster) -> Profiler | None:
        if not self.args.profile:
            return None
        targets = self.node_pids(cluster)
        if servers.mongo_pid:
            targets["mongodb"] = servers.mongo_pid
        return Profiler(targets, self.args.profile)

    async def run_comparisons(self, servers: DataServers) -> None:
        compare: dict[str, Any] = {}
        a = self.args
        common = {"work_dir": self.work_dir, "drain_jobs": self.sizes["drain_jobs"], "rate_per_s": a.rate,
                  "duration_s": self.sizes["latency_s"], "timeout_s": a.timeout}
        for peer in dict.fromkeys(a.compare):
            if peer == "arq":
                from tools.bench.arq_peer import run_arq

                compare[peer] = await run_arq(servers.redis_url, workers=a.workers * a.nodes, **common)
            elif peer == "dramatiq":
                from tools.bench.dramatiq_peer import run_dramatiq

                compare[peer] = await run_dramatiq(servers.redis_url, workers=a.workers * a.nodes,
                                                   cpu_pids=servers.pids, **common)
            elif peer == "saq":
                from tools.bench.saq_peer import run_saq

                compare[peer] = await run_saq(servers.redis_url, workers=a.workers * a.nodes,
                                              cpu_pids=servers.pids, **common)
            else:
                from tools.bench.celery_peer import run_celery

                compare[peer] = await run_celery(servers.redis_url, servers.mongodb_uri,
                                                 concurrency=a.celery_concurrency, **common)
            compare[peer]["ratios"] = self.ratios(compare[peer])
        if compare:
            self.report["compare"] = compare

    def ratios(self, peer: dict[str, Any]) -> dict[str, float | None]:
        """jobnode / peer for throughput (above 1: jobnode faster), peer / jobnode for latency (likewise)."""
        ours_drain, ours_latency = self.report.get("drain", {}), self.report.get("latency", {})

        def ratio(top: float | None, bottom: float | None) -> float | None:
            return round(top / bottom, 3) if top and bottom else None

        theirs_p = peer["drain"]["pipeline"]["jobs_per_s"]
        ours_lat = ours_latency.get("submit_to_complete_ms", {})
        ours_queue_lat = self.report.get("latency_queue", {}).get("submit_to_complete_ms", {})
        theirs_lat = peer["latency"]["submit_to_complete_ms"]
        return {
            "drain_pipeline": ratio(ours_drain.get("pipeline", {}).get("jobs_per_s"), theirs_p),
            "drain_durable_vs_their_pipeline": ratio(ours_drain.get("durable", {}).get("jobs_per_s"), theirs_p),
            "drain_durable": ratio(ours_drain.get("durable", {}).get("jobs_per_s"),
                                   (peer["drain"].get("durable") or {}).get("jobs_per_s")),
            "latency_p50": ratio(theirs_lat["p50"], ours_lat.get("p50")),
            "latency_p99": ratio(theirs_lat["p99"], ours_lat.get("p99")),
            "latency_queue_p50": ratio(theirs_lat["p50"], ours_queue_lat.get("p50")),
            "latency_queue_p99": ratio(theirs_lat["p99"], ours_queue_lat.get("p99")),
        }

    def run_failovers(self, servers: DataServers) -> None:
        a = self.args
        env_file = config_for(a.failover_algorithm, a.failover_nodes)
        # Without local start, so that the first start after the kill is the new leader's
        # dispatch (scripts/failover.py): a survivor would otherwise start jobs submitted to it
        # on its own idle workers during the election, and the figure would not time failover.
        plan = ClusterPlan("failover", a.failover_nodes, a.failover_algorithm, a.workers, env_file=env_file,
                           extra_env=(("LOCAL_START", "false"),), python=a.node_python)
        self.report["failover"] = run_failover(plan, servers, self.work_dir, runs=self.sizes["failover_runs"],
                                               rate_per_s=a.failover_rate, startup_timeout_s=a.startup_timeout)

    async def run_events(self, servers: DataServers) -> None:
        a = self.args
        plan = ClusterPlan("events", 2, a.algorithm, a.workers, python=a.node_python)
        cluster = DevCluster.start(plan, servers, self.work_dir, startup_timeout_s=a.startup_timeout)
        try:
            self.report["events"] = await run_events(
                cluster.urls, cluster.node_pids[-1], subscribers=self.sizes["subscribers"], rate_per_s=a.rate,
                duration_s=self.sizes["events_s"], timeout_s=a.timeout)
        finally:
            cluster.stop()

    async def run_history(self, servers: DataServers) -> None:
        a = self.args
        plan = ClusterPlan("history", 1, a.algorithm, a.workers, python=a.node_python)
        cluster = DevCluster.start(plan, servers, self.work_dir, startup_timeout_s=a.startup_timeout)
        try:
            self.report["history"] = await run_history(cluster.urls, servers.mongodb_uri, cluster.database,
                                                       history_jobs=self.sizes["history_jobs"])
        finally:
            cluster.stop()
        if self.sizes["history_steady_s"] > 0:
            retention = (("JOB_RETENTION", "completed=1m,failed=1m,cancelled=1m"),)
            plan = ClusterPlan("retention", 1, a.algorithm, a.workers, extra_env=retention, python=a.node_python)
            cluster = DevCluster.start(plan, servers, self.work_dir, startup_timeout_s=a.startup_timeout)
            try:
                self.report["history"]["retention_steady"] = await run_retention_steady(
                    cluster.urls, servers.mongodb_uri, cluster.database, rate_per_s=a.rate,
                    duration_s=self.sizes["history_steady_s"])
            finally:
                cluster.stop()
    async def run_scale_clusters(self, servers: DataServers) -> None:
        """The wide cluster's drain and the idle gossip cluster's CPU (tools.bench.scale)."""
        a, s = self.args, self.sizes
        scale = self.report.setdefault("scale", {})
        if s["wide_jobs"] > 0:
            plan = ClusterPlan("wide", a.wide_nodes, a.algorithm, a.wide_workers, python=a.node_python)
            cluster = DevCluster.start(plan, servers, self.work_dir, startup_timeout_s=a.startup_timeout)
            load = ClusterLoad(cluster.urls, servers.mongodb_uri, cluster.database, servers.redis_url,
                               cluster.environment["REDIS_KEY_PREFIX"], timeout_s=a.timeout)
            try:
                progress(f"scale: drain of {s['wide_jobs']} jobs on {a.wide_nodes} nodes x {a.wide_workers} workers")
                scale["wide"] = {"nodes": a.wide_nodes, "workers": a.wide_nodes * a.wide_workers,
                                 **await self.measured_drain(load, servers, cluster, s["wide_jobs"])}
            finally:
                await load.close()
                cluster.stop()
        if s["idle_s"] > 0:
            scale["idle_gossip"] = await run_idle_gossip(servers, self.work_dir, nodes=a.idle_nodes,
                                                         seconds=s["idle_s"], python=a.node_python,
                                                         startup_timeout_s=a.startup_timeout)

    def finish_report(self, seconds: float) -> None:
        ceiling, writes = self.report.get("store_ceiling"), self.report.get("writes_per_job")
        if ceiling and writes and writes.get("documents_per_job"):
            per_job = writes["documents_per_job"]["jobs"]
            ceiling["lifecycle_jobs_per_s"] = lifecycle_ceiling(ceiling, per_job["insert"], per_job["update"])
            ceiling["lifecycle_basis"] = (f"1 / (inserts_per_job / insert rate + updates_per_job / update rate) "
                                          f"with the drain's measured {per_job['insert']} inserts and "
                                          f"{per_job['update']} updates per job")
        self.report["targets"] = self.targets()
        self.report["machine"] = self.machine.finish()
        self.report["seconds"] = round(seconds, 1)

    def targets(self) -> dict[str, Any]:
        r = self.report
        get = lambda *path: _dig(r, path)  # noqa: E731
        lifecycle, insert = get("store_ceiling", "lifecycle_jobs_per_s"), get("store_ceiling", "insert_docs_per_s")
        durable, batch = get("drain", "durable", "jobs_per_s"), get("submit", "batch", "jobs_per_s")
        measured = {
            "drain_pipeline_jobs_per_s": get("drain", "pipeline", "jobs_per_s"),
            "drain_durable_share_of_lifecycle_ceiling": round(durable / lifecycle, 3) if durable and lifecycle else None,
            "latency_p99_ms_at_200_per_s": get("latency", "submit_to_complete_ms", "p99") if self.args.rate == 200 else None,
            "batch_submit_share_of_insert_ceiling": round(batch / insert, 3) if batch and insert else None,
            "raft_failover_median_ms": get("failover", "first_dispatch_ms_median")
            if self.args.failover_algorithm == "raft" else None,
            "node_rss_mib_during_drain": _max_of((get("drain", "rss_mib", "peak") or {}).values()),
            "steady_rss_growth_mib": _max_of(node.get("growth_mib") for node in (get("steady", "rss") or {}).values()),
            "routing_three_queues_vs_one": get("routing", "three_queues_vs_one"),
            "routing_thousand_vs_hundred_workers": get("routing", "thousand_vs_hundred_workers_per_queue"),
            "events_subscribers": get("events", "subscribers"),
            "events_rss_mib_per_1000_subscribers": get("events", "rss_mib_per_1000_subscribers"),
            "events_delivery_p50_ms": get("events", "delivery_ms", "p50") if self.args.rate == 200 else None,
            "events_delivery_p99_ms": get("events", "delivery_ms", "p99") if self.args.rate == 200 else None,
            "history_stats_p99_ratio": get("history", "p99_ratio", "stats_ms"),
            "history_failed_page_p99_ratio": get("history", "p99_ratio", "failed_first_page_ms"),
            "history_submit_p99_ratio": get("history", "p99_ratio", "submit_ms"),
            "latency_queue_p99_vs_saq": _ratio(get("latency_queue", "submit_to_complete_ms", "p99"),
                                               get("compare", "saq", "latency", "submit_to_complete_ms", "p99"))
            if self.args.rate == 200 else None,
            "latency_store_p99_over_insert_p99_ms": _difference(get("latency", "submit_to_complete_ms", "p99"),
                                                                get("store_ceiling", "insert_ms_at_rate", "p99"))
            if self.args.rate == 200 else None,
            "drain_pipeline_vs_dramatiq": get("compare", "dramatiq", "ratios", "drain_pipeline"),
            "scale_cost_per_job_vs_base": get("scale", "drain", "cost_per_job_vs_base"),
        }
        lower_is_better = {"latency_p99_ms_at_200_per_s", "raft_failover_median_ms", "node_rss_mib_during_drain",
                           "steady_rss_growth_mib", "routing_three_queues_vs_one", "routing_thousand_vs_hundred_workers",
                           "events_rss_mib_per_1000_subscribers", "events_delivery_p50_ms", "events_delivery_p99_ms",
                           "history_stats_p99_ratio", "history_failed_page_p99_ratio", "history_submit_p99_ratio",
                           "latency_queue_p99_vs_saq", "latency_store_p99_over_insert_p99_ms",
                           "scale_cost_per_job_vs_base"}
        targets = {name: {"target": target, "measured": measured[name],
                          "met": None if measured[name] is None else
                          (measured[name] <= target if name in lower_is_better else measured[name] >= target)}
                   for name, target in TARGETS.items()}
        if self.args.profile and r.get("drain"):
            for name in DISTURBED_BY_PROFILING:
                targets[name]["disturbed"] = PROFILING_NOTE
        return targets


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 3) if top is not None and bottom else None


def _difference(left: float | None, right: float | None) -> float | None:
    return round(left - right, 2) if left is not None and right is not None else None


def _max_of(values: Any) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _dig(tree: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def node_python_path(name: str) -> str | None:
    """`name` as an absolute path: a path is taken relative to here, a bare name looked up on PATH."""
    found = shutil.which(name)  # None unless an executable file
    return str(Path(found).absolute()) if found else None  # absolute, not resolved: a venv's link stays


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints the JSON report on stdout. Exit 0, or 1 if it could not finish."""
    args = build_parser().parse_args(argv)
    if args.nodes < 1 or args.workers < 1 or args.failover_nodes < 2:
        print("bench: --nodes and --workers must be at least 1, --failover-nodes at least 2", file=sys.stderr)
        return 2
    for peer in args.compare:  # before minutes of work, not after
        module = PEER_MODULES[peer]
        if importlib.util.find_spec(module) is None:
            print(f"bench: --compare {peer} needs {module}: pip install -e '.[bench]'", file=sys.stderr)
            return 2
    node_python = node_python_path(args.node_python)
    if node_python is None:
        print(f"bench: --node-python {args.node_python!r} is not an executable file", file=sys.stderr)
        return 2
    args.node_python = node_python  # absolute: the nodes start in their own data folders
    with tempfile.TemporaryDirectory(prefix="jobnode-bench-") as temporary:
        work_dir = (args.work_dir or Path(temporary)).resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
        try:
            report = asyncio.run(Bench(args, work_dir).run())
        except (BenchError, TimeoutError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    json.dump(report, sys.stdout, indent=2, default=str)
    print()
    return 0
