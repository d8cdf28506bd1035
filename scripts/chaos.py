#!/usr/bin/env python3
"""Random faults against a `jobnode dev` cluster under steady load, then the history check.

    scripts/chaos.py --duration 60 --algorithm raft [--nodes 3] [--every 20-40] [--seed 7]

It starts its own Redis (AOF on) behind a TCP gate it can cut, and its own SecantusDB with
test commands on, then `jobnode dev` against them, with the `history` processor of
tools/chaos/recording.py loaded into every node. While the load generator submits jobs, every 20-40 s
(after a 5 s warm-up) it injects one fault picked at random:

  kill_leader, kill_follower   kill -9 a node; it is started again 3 s later (same
                               environment, read from /proc before the kill)
  pause_leader                 SIGSTOP the leader longer than the job lease, then SIGCONT
  restart_redis                restart Redis (it reloads its AOF)
  cut_redis                    Redis unreachable for 10 s (the gate drops every connection)
  pause_mongodb                SIGSTOP SecantusDB for 10 s
  fail_mongodb                 SecantusDB fails the nodes' writes for 10 s (failCommand)

Partitions between nodes are not among them: `jobnode dev` nodes talk to each other
directly, so there is no link to cut (tests/chaos/test_process_faults.py covers them).

At the end it stops the load, waits for the cluster to settle (at most the recovery bound of
docs/architecture.md after the end of the last fault, computed from the cluster's timers), and
prints one JSON object: the checker's summary (tools/chaos/history.py) with the faults and their
times, `settle_s` and `recovery` (the bound, and how long after the last fault everything
agreed), what was still unsettled, and each node's resident memory at the start and the end.
Every read of the servers is bounded, so the report comes out even when one does not answer
(`end_state_error` then says what could not be read). Exit status 0 when every property held
and the cluster settled within the bound.

A dense run, as CI's (tests/chaos/test_dense_faults.py) and the reliability work use it:

    scripts/chaos.py --duration 300 --algorithm gossip --nodes 5 --rate 30 --every 8-15 --seed 4242
Needs a checkout of the repository with jobnode installed (scripts/test does that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402
import structlog  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from pymongo import AsyncMongoClient  # noqa: E402

from jobnode.core.settings import parse_duration_s, read_env_file  # noqa: E402
from jobnode.pipeline.outbox import CLAIM_IDLE_MS, RETRY_AFTER_FAILURE_MAX_S  # noqa: E402
from jobnode.dev.embedded import EmbeddedMongo, EmbeddedRedis, free_port_range, with_uri_options  # noqa: E402
from tools.procfs import rss_mib  # noqa: E402
from tools.chaos.load import LoadGenerator  # noqa: E402
from tools.chaos.recording import install_plugin, monotonic_s  # noqa: E402
from tools.chaos.history import EndState, Faults, LeaseTiming, StateWatcher, check, read_end_state, read_runs  # noqa: E402
from tools.chaos.history import disagreements, outcome_failures  # noqa: E402
from tools.chaos.tcp_proxy import TcpProxy  # noqa: E402

CONFIG_FILES = {"bully": "bully-2.env", "raft": "raft-3.env", "gossip": "gossip-3.env"}
FAULTS = ("kill_leader", "kill_follower", "pause_leader", "restart_redis", "cut_redis", "pause_mongodb",
          "fail_mongodb")
WARMUP_S = 5.0
OUTAGE_S = 10.0
RESTART_AFTER_S = 3.0
START_TIMEOUT_S = 90.0
# How long after the end of the last fault (the settle clock starts later, when the load stops)
# every acknowledged job must have its outcome in MongoDB with Redis agreeing: the recovery bound
# of docs/architecture.md, from the cluster's own timers (`recovery_bound_s`).
# Every read of the servers' state is bounded by this: a server that does not answer (paused,
# saturated) costs the report that read, never the report.
READ_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 30.0  # for `jobnode dev` and the restarted nodes to stop on SIGTERM, then SIGKILL
APP_NAME = "jobnode-chaos"
PREFIX = "chaos"
DATABASE = "chaos"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load and faults (default 60)")
    parser.add_argument("--algorithm", choices=sorted(CONFIG_FILES), default="raft")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--workers", type=int, default=3, help="workers per node (default 3)")
    parser.add_argument("--rate", type=float, default=10.0, help="submissions per second (default 10)")
    parser.add_argument("--hold-ms", type=int, default=100, help="how long each job runs (default 100)")
    parser.add_argument("--every", default="20-40", help="seconds between faults, LOW-HIGH (default 20-40)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"which faults to draw from (default all: "
                        f"{','.join(FAULTS)})")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--data-dir", type=Path, default=None, help="where everything lives (default: a temp dir)")
    args = parser.parse_args(argv)
    low, _, high = args.every.partition("-")
    try:
        args.every_s = (float(low), float(high or low))
    except ValueError:
        parser.error(f"--every: expected LOW-HIGH seconds such as 20-40, got {args.every!r}")
    args.fault_names = [f for f in args.faults.split(",") if f]
    unknown = set(args.fault_names) - set(FAULTS)
    if unknown or not args.fault_names:
        parser.error(f"--faults: unknown {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    return args


def say(message: str) -> None:
    """Progress for people, on stderr (stdout carries only the JSON report)."""
    print(f"chaos.py: {message}", file=sys.stderr, flush=True)


def first_free_port(count: int) -> int:
    """A first port with `count` free ports from it on."""
    first = free_port_range(count)
    if first is None:
        raise SystemExit("chaos.py: found no range of free ports")
    return first


def cluster_env(args: argparse.Namespace, redis_url: str, mongo_url: str, pythonpath: str) -> dict[str, str]:
    """What `jobnode dev` passes on to every node: the algorithm's shipped timers and our servers."""
    return {
        **os.environ,
        **read_env_file(REPO / "configs" / CONFIG_FILES[args.algorithm]),
        "REDIS_ADDR": redis_url,
        "MONGODB_URI": with_uri_options(mongo_url, appName=APP_NAME),
        "REDIS_KEY_PREFIX": PREFIX,
        "MONGODB_DATABASE": DATABASE,
        # This checkout first: the nodes (and the ones restarted after a kill) run the same code as
        # the driver, whatever jobnode the interpreter has installed.
        "PYTHONPATH": os.pathsep.join([str(REPO), pythonpath]),
        "CLUSTER_SECRET": secrets.token_urlsafe(32),
        "METRICS_ENABLED": "false",
        "RETRY_BASE_DELAY": "100ms",
        "RETRY_MAX_DELAY": "1s",
        "SHUTDOWN_GRACE": "5s",
    }


def recovery_bound_s(env: dict[str, str]) -> float:
    """The recovery bound of docs/architecture.md for a cluster with these settings.

    A job Redis lost is unfinished in MongoDB and untouched since the fault; the leader's
    reconciler queues it at its first scan once it is RECONCILE_INTERVAL old, and scans every
    RECONCILE_INTERVAL: two intervals. Before that the cluster may need a leader (the old
    one's lease to lapse, an election), and a job held by a dead node its lease to lapse.
    After it, the job runs, and its outcome reaches MongoDB through the outbox: a writer that
    failed during the fault retries within its back-off cap, a dead writer's entries are
    claimed once idle for CLAIM_IDLE_MS. Two seconds cover the run itself and the commits.
    """
    def seconds(name: str, default: str) -> float:
        return parse_duration_s(env.get(name, default))

    return (2 * seconds("RECONCILE_INTERVAL", "15s") + seconds("LEADER_LEASE_TTL", "5s")
            + 2 * seconds("ELECTION_TIMEOUT", "1s") + seconds("JOB_LEASE_TTL", "30s")
            + RETRY_AFTER_FAILURE_MAX_S + CLAIM_IDLE_MS / 1000 + 2.0)


class DevCluster:
    """Our Redis (behind a gate), our SecantusDB, `jobnode dev`, and the nodes this script restarted."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.redis = EmbeddedRedis(root / "redis")
        self.mongo = EmbeddedMongo(root / "mongodb", test_commands=True)
        self.gate: TcpProxy | None = None
        self.dev: subprocess.Popen[bytes] | None = None
        self.pids: dict[str, int] = {}  # node id -> its current process
        self.urls: dict[str, str] = {}
        self.restarted: list[subprocess.Popen[bytes]] = []
        self.paused: set[str] = set()
        self.headers: dict[str, str] = {}
        self.env: dict[str, str] = {}

    async def start(self, pythonpath: str) -> None:
        await asyncio.to_thread(self.redis.start)
        await asyncio.to_thread(self.mongo.start)
        self.gate = await TcpProxy(self.redis.port, name="redis-gate").start()
        self.env = cluster_env(self.args, f"redis://127.0.0.1:{self.gate.port}/0", self.mongo.url, pythonpath)
        port = metrics_port = first_free_port(self.args.nodes)
        while abs(metrics_port - port) < self.args.nodes:  # dev refuses overlapping ranges
            metrics_port = first_free_port(self.args.nodes)
        command = [sys.executable, "-m", "jobnode", "dev", "--nodes", str(self.args.nodes),
                   "--algorithm", self.args.algorithm, "--port", str(port), "--metrics-port", str(metrics_port),
                   "--workers", str(self.args.workers), "--data-dir", str(self.root / "dev")]
        log = open(self.root / "dev.log", "ab")
        self.dev = subprocess.Popen(command, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        await self._read_cluster_file()

    async def _read_cluster_file(self) -> None:
        path = self.root / "dev" / "cluster.json"
        deadline = monotonic_s() + START_TIMEOUT_S
        while not path.exists():
            if self.dev.poll() is not None or monotonic_s() > deadline:
                tail = (self.root / "dev.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"chaos.py: `jobnode dev` did not start:\n{tail}")
            await asyncio.sleep(0.2)
        document = json.loads(path.read_text())
        for node in document["nodes"]:
            self.pids[node["id"]], self.urls[node["id"]] = node["pid"], node["url"]
        admin = document.get("admin")
        token = admin.get("token") or admin.get("access_token") if isinstance(admin, dict) else None
        if token:  # a build with authentication: dev mode prints an admin token
            self.headers = {"Authorization": f"Bearer {token}"}

    def alive(self, node_id: str) -> bool:
        try:
            os.kill(self.pids[node_id], 0)
            return True
        except (ProcessLookupError, KeyError):
            return False

    def targets(self) -> list[str]:
        return [self.urls[n] for n in self.pids if n not in self.paused and self.alive(n)]

    async def leader(self, session: aiohttp.ClientSession) -> str | None:
        for node_id in self.pids:
            if node_id in self.paused or not self.alive(node_id):
                continue
            try:
                async with session.get(f"{self.urls[node_id]}/api/v1/leader", headers=self.headers) as resp:
                    if resp.status == 200:
                        leader = (await resp.json()).get("leader_id")
                        if leader:
                            return leader
            except (aiohttp.ClientError, asyncio.TimeoutError):
                continue
        return None

    async def stop(self) -> None:
        processes = [p for p in [self.dev, *self.restarted] if p is not None and p.poll() is None]
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                say(f"pid {process.pid} did not stop within {STOP_TIMEOUT_S:.0f}s: killed")
                os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait)
        if self.gate is not None:
            await self.gate.close()
        await asyncio.to_thread(self.mongo.stop)
        await asyncio.to_thread(self.redis.stop)


class FaultInjector:
    """The faults, each written down in `faults` with its time for the checker."""

    def __init__(self, cluster: DevCluster, faults: Faults, timing: LeaseTiming, session: aiohttp.ClientSession,
                 mongo_admin: AsyncMongoClient) -> None:
        self.cluster, self.faults, self.timing = cluster, faults, timing
        self.session, self.mongo_admin = session, mongo_admin
        self._restarts: list[asyncio.Task[None]] = []
        self.last_fault_end = monotonic_s()  # when the last fault was over (a killed node back)

    async def inject(self, name: str) -> None:
        await getattr(self, name)()
        self.last_fault_end = max(self.last_fault_end, monotonic_s())

    async def _pick(self, leader: bool) -> str | None:
        current = await self.cluster.leader(self.session)
        live = [n for n in self.cluster.pids if self.cluster.alive(n) and n not in self.cluster.paused]
        if leader:
            return current if current in live else None
        followers = [n for n in live if n != current]
        return random.choice(followers) if followers else None

    async def kill_leader(self) -> None:
        await self._kill(await self._pick(leader=True))

    async def kill_follower(self) -> None:
        await self._kill(await self._pick(leader=False))

    async def _kill(self, node_id: str | None) -> None:
        if node_id is None:
            self.faults.note("skipped", reason="no node to kill")
            return
        pid = self.cluster.pids[node_id]
        environ = _environ_of(pid)
        cwd = os.readlink(f"/proc/{pid}/cwd")
        self.faults.killed(pid, node_id)
        os.kill(pid, signal.SIGKILL)
        self._restarts.append(asyncio.create_task(self._restart(node_id, environ, cwd)))

    async def _restart(self, node_id: str, environ: dict[str, str], cwd: str) -> None:
        await asyncio.sleep(RESTART_AFTER_S)  # how long the node stays dead: part of the fault
        log = open(self.cluster.root / "dev" / node_id / "node.log", "ab")
        process = subprocess.Popen([sys.executable, "-m", "jobnode", "serve"], env=environ, cwd=cwd,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.cluster.restarted.append(process)
        self.cluster.pids[node_id] = process.pid
        self.faults.note("restarted", node=node_id, pid=process.pid)
        self.last_fault_end = max(self.last_fault_end, monotonic_s())

    async def pause_leader(self) -> None:
        node_id = await self._pick(leader=True)
        if node_id is None:
            self.faults.note("skipped", reason="no leader to pause")
            return
        pid = self.cluster.pids[node_id]
        self.cluster.paused.add(node_id)
        start = monotonic_s()
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(min(self.timing.ttl_s, self.timing.worker_ttl_s) + 2.0)
        finally:
            os.kill(pid, signal.SIGCONT)
            self.cluster.paused.discard(node_id)
            self.faults.blackout("pause_leader", start, monotonic_s(), [node_id])

    async def restart_redis(self) -> None:
        start = monotonic_s()
        await asyncio.to_thread(self.cluster.redis.restart)
        self.faults.blackout("restart_redis", start, monotonic_s())

    async def cut_redis(self) -> None:
        start = monotonic_s()
        self.cluster.gate.cut()
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            self.cluster.gate.heal()
            self.faults.blackout("cut_redis", start, monotonic_s())

    async def pause_mongodb(self) -> None:
        pid = self.cluster.mongo.pid
        self.faults.note("pause_mongodb", seconds=OUTAGE_S)
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            os.kill(pid, signal.SIGCONT)

    async def fail_mongodb(self) -> None:
        self.faults.note("fail_mongodb", seconds=OUTAGE_S, error_code=91)
        data = {"appName": APP_NAME, "errorCode": 91, "failCommands": ["insert", "update", "delete", "find"]}
        await self.mongo_admin.admin.command("configureFailPoint", "failCommand", mode="alwaysOn", data=data)
        try:
            await asyncio.sleep(OUTAGE_S)
        finally:
            await self.mongo_admin.admin.command("configureFailPoint", "failCommand", mode="off")

    async def settle(self) -> None:
        """Wait for pending restarts, so every killed node is back before the check."""
        if self._restarts:
            await asyncio.gather(*self._restarts)


def _environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


async def run_faults(args: argparse.Namespace, injector: FaultInjector, rng: random.Random) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + args.duration
    next_at = loop.time() + min(WARMUP_S, args.duration)
    # No fault starts later than an outage's length before the end: the run ends on time.
    last_start = end - OUTAGE_S - 2.0
    while loop.time() < last_start:
        await asyncio.sleep(max(0.0, min(next_at, last_start) - loop.time()))
        if loop.time() >= last_start:
            break
        name = rng.choice(args.fault_names)
        say(f"{loop.time() - end + args.duration:6.1f}s  {name}")
        await injector.inject(name)
        next_at = loop.time() + rng.uniform(*args.every_s)
    await asyncio.sleep(max(0.0, end - loop.time()))
    await injector.settle()


async def settle(db: Any, redis: aioredis.Redis, acked: dict[str, str], deadline: float) -> list[dict[str, Any]]:
    """Wait until every acknowledged job is finished and MongoDB agrees with Redis; what is still off."""
    while True:
        try:
            end = await asyncio.wait_for(read_end_state(db, redis, PREFIX), timeout=READ_TIMEOUT_S)
            off = outcome_failures(acked, end) + disagreements(end)
        except Exception as exc:  # noqa: BLE001 - a server still coming back, or not answering
            off = [{"error": f"{type(exc).__name__}: {exc}"}]
        if not off or monotonic_s() > deadline:
            return off
        await asyncio.sleep(0.5)


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    random.seed(args.seed)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="jobnode-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    record_dir = root / "history"
    record_dir.mkdir(exist_ok=True)
    cluster = DevCluster(args, root)
    began = monotonic_s()
    say(f"seed {args.seed}, data in {root}")
    try:
        await cluster.start(install_plugin(root / "plugin"))
        say(f"cluster ready after {monotonic_s() - began:.1f}s")
        return await run_with_cluster(args, cluster, record_dir, rng)
    finally:
        stopping = monotonic_s()
        await cluster.stop()
        say(f"stopped in {monotonic_s() - stopping:.1f}s")


async def run_with_cluster(args: argparse.Namespace, cluster: DevCluster, record_dir: Path,
                           rng: random.Random) -> int:
    env = cluster.env
    timing = LeaseTiming(ttl_s=parse_duration_s(env["JOB_LEASE_TTL"]), worker_ttl_s=parse_duration_s(env["WORKER_TTL"]),
                         heartbeat_s=parse_duration_s(env["WORKER_HEARTBEAT_INTERVAL"]))
    rss_start = {n: rss_mib(pid) for n, pid in cluster.pids.items()}
    redis = aioredis.Redis.from_url(cluster.redis.url, socket_timeout=5, socket_connect_timeout=5)
    mongo = AsyncMongoClient(cluster.mongo.url, serverSelectionTimeoutMS=10_000, connectTimeoutMS=10_000,
                             socketTimeoutMS=int(READ_TIMEOUT_S * 1000))
    faults = Faults()
    load = LoadGenerator(cluster.targets, record_dir, rate_per_s=args.rate, hold_ms=args.hold_ms, fail_every=20,
                         headers=cluster.headers).start()
    watcher = StateWatcher(mongo[DATABASE], redis, PREFIX, load.acked).start()
    bound_s = recovery_bound_s(env)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            injector = FaultInjector(cluster, faults, timing, session, mongo)
            await run_faults(args, injector, rng)
        await load.stop()
        settling = monotonic_s()
        unsettled = await settle(mongo[DATABASE], redis, load.acked, injector.last_fault_end + bound_s)
        settled_at = monotonic_s()
        settle_s = round(settled_at - settling, 1)
        after_fault_s = round(settled_at - injector.last_fault_end, 1)
        say(f"settled in {settle_s}s ({after_fault_s}s after the last fault; bound {bound_s:.0f}s)" if not unsettled
            else f"did not settle within {bound_s:.0f}s of the last fault")
        await watcher.sample_once()
        await watcher.stop()
        try:
            end = await asyncio.wait_for(read_end_state(mongo[DATABASE], redis, PREFIX), timeout=READ_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - the report still goes out, saying what it could not read
            end, read_error = EndState({}, {}, {}), f"{type(exc).__name__}: {exc}"
        else:
            read_error = None
        report = check(load.acked, read_runs(record_dir), watcher.samples, end, faults, timing, load.refused)
        rss_end = {n: rss_mib(pid) for n, pid in cluster.pids.items()}
        out = {"algorithm": args.algorithm, "nodes": args.nodes, "duration_s": args.duration, "seed": args.seed,
               "check": report.summary(), "settle_s": None if unsettled else settle_s,
               "recovery": {"bound_s": round(bound_s, 1), "after_last_fault_s": None if unsettled else after_fault_s},
               "unsettled": {"count": len(unsettled), "examples": unsettled[:5]},
               "end_state_error": read_error,
               "rss_mib": {n: {"start": rss_start[n], "end": rss_end.get(n)} for n in rss_start},
               "latency": load.latency_summary(), "data_dir": str(cluster.root)}
        print(json.dumps(out, indent=1))
        return 0 if report.ok and not unsettled and read_error is None else 1
    finally:
        await watcher.stop()
        await redis.aclose()
        await mongo.close()


if __name__ == "__main__":
    # jobnode's helpers log through structlog, whose default is stdout: that carries only the report.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    sys.exit(asyncio.run(main(parse_args())))
