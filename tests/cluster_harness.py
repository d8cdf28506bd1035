"""A real jobnode cluster for end-to-end tests: N `jobnode serve` processes on loopback.

Every node runs as its own process (`python -m jobnode serve`) against the session's Redis
and SecantusDB, with a key prefix and a database of its own test. Timers come from the
configs/ file shipped for the algorithm, so the tests exercise the settings we recommend.

Peer traffic goes through one `TcpProxy` gate in front of each node: a node's PEERS and its
ADVERTISE_URL name the gates, never the nodes. Bully and gossip learn addresses from
messages (the sender's ADVERTISE_URL), so per-link proxies in PEERS alone would be bypassed
after the first message; a gate instead tells the links into its node apart by the
X-Jobnode-Node header of each connection, so the link i->j is "node i's connections
through gate j". Redis and MongoDB are reached directly: a partitioned leader still
reaches Redis, which is exactly where fencing has to stop it.

Tests and helpers use the nodes' own API ports; only peer traffic crosses the gates.

With `tls=True` every node serves https with a certificate from a development CA
(jobnode.dev.certs) and peers use mutual TLS. A gate then cannot read the sender header of an
encrypted connection, so it cuts whole gates only: `isolate()` works, a cut of one
sender's links does not (no test needs it over TLS).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from pymongo import AsyncMongoClient

from jobnode.dev.certs import DevCerts, write_dev_certs
from jobnode.client import AsyncClient, ClientError
from jobnode.core.settings import VARIABLES, read_env_file
from jobnode.dev.embedded import EmbeddedMongo, EmbeddedRedis, free_port, log_tail
from jobnode.auth.peer_signatures import NODE_HEADER
from tools.chaos.tcp_proxy import TcpProxy, http_header_identity
from tests.waiting import wait_until

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
# The shipped config whose timers each algorithm's tests use, whatever the node count.
CONFIG_FILES = {"bully": "bully-2.env", "raft": "raft-3.env", "gossip": "gossip-3.env"}
START_TIMEOUT_S = 60.0
LEADER_TIMEOUT_S = 20.0
EXIT_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 40
# Test-only settings on top of the shipped config: no metrics ports to collide, quick
# retries and reaping, small worker pools, JSON logs the tests can read.
TEST_ENV = {
    "METRICS_ENABLED": "false",
    "WORKER_COUNT": "3",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "info",
    "RETRY_BASE_DELAY": "100ms",
    "RETRY_MAX_DELAY": "500ms",
    "SHUTDOWN_GRACE": "5s",
    "MONGODB_TIMEOUT": "10s",
    "RECONCILE_INTERVAL": "2s",
    "PYTHONUNBUFFERED": "1",
    # The tests' http jobs call a recorder on loopback, which the destination policy refuses by default.
    "HTTP_PROCESSOR_ALLOW": "127.0.0.1",
}


def config_env(algorithm: str) -> dict[str, str]:
    """The timers shipped in configs/ for this algorithm's tests."""
    return read_env_file(CONFIGS_DIR / CONFIG_FILES[algorithm])


def _inherited_env() -> dict[str, str]:
    # The developer's own jobnode settings must not leak into the test cluster.
    names = {variable.name for variable in VARIABLES}
    return {key: value for key, value in os.environ.items() if key not in names}


@dataclass
class Node:
    """One node of the test cluster: where it lives and its current process."""

    id: str
    port: int
    data_dir: Path
    log_path: Path
    gate: TcpProxy
    env: dict[str, str] = field(default_factory=dict)
    scheme: str = "http"
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    client: AsyncClient | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line this node wrote so far (all its runs)."""
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    events.append(json.loads(line))
                except ValueError:
                    pass
        return events


class Cluster:
    """N node processes, their gates, and the faults a test can inflict on them."""

    def __init__(self, root: Path, algorithm: str, count: int, backends: dict[str, str], env: dict[str, str],
                 *, tls: bool = False) -> None:
        self.root = root
        self.algorithm = algorithm
        self.backends = backends
        self.extra_env = env
        self.secret = uuid.uuid4().hex + uuid.uuid4().hex
        self.nodes: dict[str, Node] = {}
        self._ids = [f"node-{i}" for i in range(1, count + 1)]
        self.certs: DevCerts | None = write_dev_certs(root / "certs", self._ids) if tls else None
        self.scheme = "https" if tls else "http"

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> Cluster:
        """Start every node at once and wait until all are healthy and agree on a leader."""
        for node_id in self._ids:
            port = free_port()
            identify = None if self.certs else http_header_identity(NODE_HEADER)
            gate = await TcpProxy(port, identify=identify, name=f"gate:{node_id}").start()
            data_dir = self.root / node_id
            data_dir.mkdir(parents=True, exist_ok=True)
            self.nodes[node_id] = Node(node_id, port, data_dir, self.root / f"{node_id}.log", gate,
                                       scheme=self.scheme)
        for node in self.nodes.values():
            node.env = self._node_env(node)
            self._spawn(node)
        await asyncio.gather(*(self.wait_healthy(node_id) for node_id in self.nodes))
        await self.leader()
        return self

    async def add(self, node_id: str, seeds: list[str], *, wait: bool = True, **env: str) -> Node:
        """Start one more node that knows only `seeds` (node ids whose gates it joins through)."""
        port = free_port()
        identify = None if self.certs else http_header_identity(NODE_HEADER)
        gate = await TcpProxy(port, identify=identify, name=f"gate:{node_id}").start()
        data_dir = self.root / node_id
        data_dir.mkdir(parents=True, exist_ok=True)
        node = Node(node_id, port, data_dir, self.root / f"{node_id}.log", gate, scheme=self.scheme)
        self.nodes[node_id] = node
        node.env = {**self._node_env(node), "PEERS": "",
                    "SEEDS": ",".join(self._gate_url(self.nodes[seed]) for seed in seeds), **env}
        self._spawn(node)
        if wait:
            await self.wait_healthy(node_id)
        return node

    def _node_env(self, node: Node) -> dict[str, str]:
        peers = ",".join(f"{other.id}={self._gate_url(other)}" for other in self.nodes.values() if other is not node)
        return {
            **_inherited_env(),
            **config_env(self.algorithm),
            **TEST_ENV,
            **self.backends,
            "NODE_ID": node.id,
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(node.port),
            "ADVERTISE_URL": self._gate_url(node),
            "PEERS": peers,
            "CLUSTER_SECRET": self.secret,
            "DATA_DIR": str(node.data_dir),
            "ELECTION_ALGORITHM": self.algorithm,
            **self._tls_env(node),
            **self.extra_env,
        }

    def _gate_url(self, node: Node) -> str:
        return node.gate.url.replace("http://", f"{self.scheme}://", 1)

    def _tls_env(self, node: Node) -> dict[str, str]:
        if self.certs is None:
            return {}
        pair = self.certs.nodes[node.id]
        return {"TLS_ENABLED": "true", "TLS_CERT_FILE": str(pair.cert_file), "TLS_KEY_FILE": str(pair.key_file),
                "TLS_CA_FILE": str(self.certs.ca_file)}

    def _spawn(self, node: Node) -> None:
        node.log_file = open(node.log_path, "ab")
        node.log_file.write(f"--- harness: starting {node.id}\n".encode())
        node.log_file.flush()
        # cwd is the node's own folder, so no stray .env file is read.
        node.process = subprocess.Popen(
            [sys.executable, "-m", "jobnode", "serve"], env=node.env, cwd=node.data_dir,
            stdin=subprocess.DEVNULL, stdout=node.log_file, stderr=subprocess.STDOUT,
        )
        ca_file = str(self.certs.ca_file) if self.certs else None
        node.client = AsyncClient(node.url, max_attempts=1, timeout_s=5.0, ca_file=ca_file)

    async def close(self) -> None:
        """Kill every node and close every gate and client; safe after a failed start."""
        for node in self.nodes.values():
            if node.alive:
                node.process.kill()
        for node in self.nodes.values():
            if node.process is not None:
                await self._reaped(node)
            if node.client is not None:
                await node.client.close()
            if node.log_file is not None:
                node.log_file.close()
            await node.gate.close()

    def log_tails(self) -> str:
        parts = []
        for node in self.nodes.values():
            state = "running" if node.alive else f"exit {node.process.returncode if node.process else '-'}"
            tail = log_tail(node.log_path, lines=LOG_TAIL_LINES) if node.log_path.exists() else "(no log)"
            parts.append(f"===== {node.id} ({state}) {node.log_path} =====\n{tail}")
        return "\n".join(parts)

    # -- processes -------------------------------------------------------------------

    def kill(self, node_id: str) -> None:
        """SIGKILL: the node vanishes mid-step, with no goodbye to anyone."""
        self.nodes[node_id].process.kill()

    def stop(self, node_id: str) -> None:
        """SIGTERM: the node leaves gracefully (see `wait_exit`)."""
        self.nodes[node_id].process.send_signal(signal.SIGTERM)

    async def wait_exit(self, node_id: str, timeout_s: float = EXIT_TIMEOUT_S) -> int:
        node = self.nodes[node_id]
        await wait_until(lambda: node.process.poll() is not None, timeout_s=timeout_s,
                         message=f"{node_id} did not exit")
        return node.process.returncode

    async def restart(self, node_id: str) -> None:
        """Start a stopped or killed node again: same environment, same DATA_DIR."""
        node = self.nodes[node_id]
        await self.wait_exit(node_id)
        await node.client.close()
        node.log_file.close()
        self._spawn(node)
        await self.wait_healthy(node_id)

    async def _reaped(self, node: Node) -> None:
        await wait_until(lambda: node.process.poll() is not None, timeout_s=EXIT_TIMEOUT_S,
                         message=f"{node.id} outlived SIGKILL")

    async def wait_healthy(self, node_id: str, timeout_s: float = START_TIMEOUT_S) -> None:
        node = self.nodes[node_id]

        async def healthy() -> bool:
            if node.process.poll() is not None:
                raise AssertionError(f"{node_id} exited with {node.process.returncode} while starting:\n"
                                     f"{log_tail(node.log_path, lines=LOG_TAIL_LINES)}")
            try:
                return (await node.client.health()).get("status") == "ok"
            except ClientError:
                return False

        await wait_until(healthy, timeout_s=timeout_s, interval_s=0.1, message=f"{node_id} never became healthy")

    # -- views -----------------------------------------------------------------------

    @property
    def live(self) -> list[str]:
        return [node_id for node_id, node in self.nodes.items() if node.alive]

    def client(self, node_id: str) -> AsyncClient:
        return self.nodes[node_id].client

    async def leader_view(self, node_id: str) -> dict[str, Any]:
        """GET /api/v1/leader on one node."""
        return await self.client(node_id).leader()

    async def views(self, among: list[str] | None = None) -> dict[str, dict[str, Any]]:
        ids = among if among is not None else self.live
        answers = await asyncio.gather(*(self.leader_view(node_id) for node_id in ids))
        return dict(zip(ids, answers))

    async def leader(self, among: list[str] | None = None, *, timeout_s: float = LEADER_TIMEOUT_S,
                     other_than: str | None = None, with_lease: bool = True) -> str:
        """The leader every node in `among` (default: the live ones) names, waited for.

        With `with_lease`, also waits until that leader holds the fenced lease: until then
        nobody may dispatch, so it is not leading yet in any way that matters.
        """

        last: dict[str, Any] = {}

        async def agreed() -> str | None:
            views = await self.views(among)
            last.update(views)
            named = {view["leader_id"] for view in views.values()}
            if len(named) != 1 or None in named or other_than in named:
                return None
            leader_id = named.pop()
            if with_lease:
                lease = views[next(iter(views))].get("lease") or {}
                if lease.get("holder") != leader_id:
                    return None
            return leader_id

        try:
            return await wait_until(agreed, timeout_s=timeout_s, interval_s=0.05, ignore=(ClientError,),
                                    message=f"nodes {among or self.live} never agreed on a leader")
        except AssertionError as exc:
            summary = {n: (v["leader_id"], v["term"], v.get("lease")) for n, v in last.items()}
            raise AssertionError(f"{exc}; last views (leader, term, lease): {summary}") from None

    # -- partitions ------------------------------------------------------------------

    def isolate(self, node_id: str) -> None:
        """Cut every peer link to and from `node_id`; its Redis and MongoDB stay reachable."""
        self.nodes[node_id].gate.cut()
        for other in self.nodes.values():
            if other.id != node_id:
                other.gate.cut(source=node_id)

    def heal(self) -> None:
        for node in self.nodes.values():
            node.gate.heal()


@dataclass
class Backends:
    """The session's data servers and this test's private namespace on them."""

    redis: EmbeddedRedis
    mongo: EmbeddedMongo
    key_prefix: str
    db_name: str

    def env(self) -> dict[str, str]:
        return {"REDIS_ADDR": self.redis.url, "MONGODB_URI": self.mongo.url,
                "REDIS_KEY_PREFIX": self.key_prefix, "MONGODB_DATABASE": self.db_name}


@pytest.fixture
async def start_cluster(tmp_path: Path, redis_server, mongo_server, key_prefix: str, mongo_db_name: str,
                        mongo_client: AsyncMongoClient, redis_client) -> AsyncIterator[Any]:
    """`await start_cluster("raft", nodes=3, **env)` -> a started `Cluster`; all of it is killed afterwards.

    The nodes' log tails are printed at teardown; pytest shows them when the test failed.
    `redis_client` is asked for so the test's Redis keys are deleted afterwards.
    """
    backends = Backends(redis_server, mongo_server, key_prefix, mongo_db_name)
    clusters: list[Cluster] = []

    async def start(algorithm: str, nodes: int = 3, *, tls: bool = False, **env: str) -> Cluster:
        root = tmp_path / f"cluster-{len(clusters) + 1}"
        cluster = Cluster(root, algorithm, nodes, backends.env(), env, tls=tls)
        clusters.append(cluster)
        return await cluster.start()

    try:
        yield start
    finally:
        for cluster in clusters:
            await cluster.close()
            print(cluster.log_tails())
