"""The benchmark's servers and clusters: one Redis and one MongoDB for the whole run, `jobnode dev` clusters on top.

The bench starts the data servers itself (unless given URLs) so that every workload, the
store ceiling and the peers compared against (arq) use the very same two servers, and so
that several clusters in a row (one per failover run) can share them. Each cluster gets
its own Redis key prefix and MongoDB database, so runs never see each other's jobs.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from jobnode.core.settings import read_env_file
from jobnode.dev.embedded import EmbeddedMongo, EmbeddedRedis, free_port_range

CLUSTER_FILE_POLL_S = 0.2
STOP_GRACE_S = 60.0


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


def progress(message: str) -> None:
    """Progress goes to stderr: stdout carries the one JSON object and nothing else."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def redact(url: str) -> str:
    return re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", url)


@dataclass
class DataServers:
    """The Redis and MongoDB every workload of one run uses: given, or embedded and started here."""

    redis_url: str
    mongodb_uri: str
    embedded: list[EmbeddedRedis | EmbeddedMongo] = field(default_factory=list)

    @classmethod
    def start(cls, work_dir: Path, redis_url: str | None, mongodb_uri: str | None,
              oplog_entries: int) -> DataServers:
        servers = cls(redis_url or "", mongodb_uri or "")
        try:
            if not redis_url:
                redis = EmbeddedRedis(work_dir / "redis").start()
                servers.embedded.append(redis)
                servers.redis_url = redis.url
            if not mongodb_uri:
                # The oplog is how writes per job are counted: it must hold a whole workload.
                mongo = EmbeddedMongo(work_dir / "mongodb", oplog_max_entries=oplog_entries).start()
                servers.embedded.append(mongo)
                servers.mongodb_uri = mongo.url
        except Exception:
            servers.stop()
            raise
        progress(f"redis {redact(servers.redis_url)}, mongodb {redact(servers.mongodb_uri)}")
        return servers

    @property
    def mongo_pid(self) -> int | None:
        """The embedded MongoDB server's pid (to profile it), None when it is not ours."""
        return self.pids.get("mongodb")

    @property
    def pids(self) -> dict[str, int]:
        """The embedded servers' pids by role ("redis", "mongodb"); servers given by URL are not ours."""
        found = {"redis" if isinstance(s, EmbeddedRedis) else "mongodb": s.pid for s in self.embedded}
        return {role: pid for role, pid in found.items() if pid is not None}

    def stop(self) -> None:
        for server in reversed(self.embedded):
            server.stop()
        self.embedded.clear()


PEER_STOP_GRACE_S = 30.0  # an arq or Celery worker finishing its last jobs on SIGTERM


def free_port_base(count: int) -> int:
    """A port such that it and the count-1 ports above it are free now."""
    first = free_port_range(count)
    if first is None:
        raise BenchError(f"no range of {count} free ports found")
    return first


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float) -> bool:
    """SIGTERM a child started in its own session, SIGKILL it after grace_s; False if it had to be killed."""
    if process.poll() is not None:
        return True
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
        return True
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return False


@dataclass(frozen=True)
class ClusterPlan:
    """What `jobnode dev` cluster to start, and the node settings it runs with."""

    name: str
    nodes: int
    algorithm: str
    workers: int
    env_file: Path | None = None  # e.g. configs/raft-3.env for the failover runs
    extra_env: tuple[tuple[str, str], ...] = ()
    python: str = sys.executable  # the interpreter (and so the installed packages) the nodes run on

    def node_environment(self, servers: DataServers, run_tag: str) -> dict[str, str]:
        """The variables that differ from the node defaults (recorded in the report)."""
        env = dict(read_env_file(self.env_file)) if self.env_file else {}
        env.update(self.extra_env)
        env.update({
            "REDIS_ADDR": servers.redis_url,
            "MONGODB_URI": servers.mongodb_uri,
            "REDIS_KEY_PREFIX": f"bench-{run_tag}-{self.name}",
            "MONGODB_DATABASE": f"bench_{run_tag}_{self.name}"[:63],
        })
        return env


@dataclass
class DevCluster:
    """A running `jobnode dev` child process and what its cluster.json says."""

    plan: ClusterPlan
    process: subprocess.Popen[bytes]
    log: IO[bytes]
    data_dir: Path
    environment: dict[str, str]
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def cluster_file(self) -> Path:
        return self.data_dir / "cluster.json"

    @property
    def urls(self) -> list[str]:
        return [node["url"] for node in self.description["nodes"]]

    @property
    def metrics_urls(self) -> list[str]:
        return [node["metrics_url"] for node in self.description["nodes"]]

    @property
    def node_pids(self) -> list[int]:
        return [node["pid"] for node in self.description["nodes"]]

    @property
    def database(self) -> str:
        return self.environment["MONGODB_DATABASE"]

    @classmethod
    def start(cls, plan: ClusterPlan, servers: DataServers, work_dir: Path, *,
              startup_timeout_s: float) -> DevCluster:
        run_tag = secrets.token_hex(3)
        data_dir = work_dir / f"cluster-{plan.name}-{run_tag}"
        data_dir.mkdir(parents=True)
        environment = plan.node_environment(servers, run_tag)
        port = free_port_base(2 * plan.nodes)
        command = [plan.python, "-m", "jobnode", "dev", "--nodes", str(plan.nodes),
                   "--algorithm", plan.algorithm, "--workers", str(plan.workers),
                   "--data-dir", str(data_dir), "--port", str(port),
                   "--metrics-port", str(port + plan.nodes),
                   "--startup-timeout", str(startup_timeout_s)]
        log = open(data_dir / "dev.log", "ab")
        # cwd is the cluster's own folder: a stray .env in the caller's directory must not
        # change the settings being measured.
        process = subprocess.Popen(command, env={**os.environ, **environment}, cwd=data_dir,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        cluster = cls(plan, process, log, data_dir, environment)
        progress(f"starting {plan.nodes}-node {plan.algorithm} cluster '{plan.name}' "
                 f"({plan.workers} workers/node; log {data_dir / 'dev.log'})")
        try:
            cluster._wait_for_cluster_file(startup_timeout_s + 30)
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _wait_for_cluster_file(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.cluster_file.exists():
            if self.process.poll() is not None:
                raise BenchError(f"jobnode dev exited with code {self.process.returncode}; "
                                 f"see {self.data_dir / 'dev.log'}")
            if time.monotonic() > deadline:
                raise BenchError(f"the cluster was not ready after {timeout_s:g}s; see {self.data_dir / 'dev.log'}")
            time.sleep(CLUSTER_FILE_POLL_S)
        self.description = json.loads(self.cluster_file.read_text())

    def stop(self) -> None:
        """Stop the cluster the way an operator would (SIGTERM to `jobnode dev`), killing it if it hangs."""
        if not stop_process_group(self.process, STOP_GRACE_S):
            progress(f"cluster '{self.plan.name}' did not stop within {STOP_GRACE_S:g}s; it was killed")
            # The nodes live in sessions of their own: a killed `jobnode dev` leaves them behind.
            for pid in self.node_pids if self.description else []:
                _kill_quietly(pid)
        self.log.close()


def _kill_quietly(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
