"""A Redis primary, one replica and three sentinels on loopback, from Debian's redis-server and
redis-sentinel, with timers short enough to fail over in a couple of seconds.

Sentinel rewrites its config file as it learns the topology, so each sentinel gets its own file
in the set's folder. Nothing persists: no RDB, no AOF (a failover, not a restart, is the fault).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from jobnode.dev.embedded import free_port

MASTER_NAME = "jobs"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 4000
START_TIMEOUT_S = 20.0


def missing_binaries() -> list[str]:
    return [name for name in ("redis-server", "redis-sentinel") if shutil.which(name) is None]


@dataclass
class SentinelSet:
    root: Path
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)
    sentinel_ports: list[int] = field(default_factory=lambda: [free_port() for _ in range(3)])
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sentinels(self) -> str:
        """REDIS_SENTINELS for the nodes."""
        return ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)

    def start(self) -> SentinelSet:
        self.root.mkdir(parents=True, exist_ok=True)
        self._spawn("primary", ["redis-server", *self._server_args(self.primary_port)])
        self._spawn("replica", ["redis-server", *self._server_args(self.replica_port),
                                "--replicaof", "127.0.0.1", str(self.primary_port)])
        self._wait(lambda: _info(self.replica_port, "replication").get("master_link_status") == "up",
                   "the replica never synced with the primary")
        for i, port in enumerate(self.sentinel_ports):
            conf = self.root / f"sentinel-{i}.conf"
            conf.write_text("\n".join([
                f"port {port}", "bind 127.0.0.1", f"dir {self.root}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {MASTER_NAME} 1", "",
            ]))
            self._spawn(f"sentinel-{i}", ["redis-sentinel", str(conf)])
        # Every sentinel must know the replica and the other sentinels before a failover can be agreed.
        self._wait(self._sentinels_ready, "the sentinels never saw the replica and each other")
        return self

    def _server_args(self, port: int) -> list[str]:
        return ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.root), "--dbfilename", f"dump-{port}.rdb"]

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL, cwd=self.root)
        log.close()

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                master = client.sentinel_master(MASTER_NAME)
                if int(master.get("num-slaves", 0)) < 1 or int(master.get("num-other-sentinels", 0)) < 2:
                    return False
            finally:
                client.close()
        return True

    def _wait(self, condition, message: str) -> None:  # type: ignore[no-untyped-def]
        # Blocking and polled: this runs in a thread before the cluster exists.
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if condition():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{message}; logs in {self.root}")

    def primary_address(self) -> tuple[str, int]:
        """What the sentinels name as primary now (the first that answers)."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                host, found = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                return (host.decode() if isinstance(host, bytes) else host), int(found)
            except redis.RedisError:
                continue
            finally:
                client.close()
        raise AssertionError("no sentinel answered")

    def kill_primary(self) -> None:
        self.processes["primary"].kill()
        self.processes["primary"].wait(timeout=10)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            process.wait(timeout=10)


def _info(port: int, section: str) -> dict:
    client = redis.Redis(port=port, socket_timeout=1)
    try:
        return client.info(section)
    finally:
        client.close()
