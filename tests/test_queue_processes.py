"""Routing across real node processes: a type only some nodes run, and a rolling restart that adds one.

Each node is a `jobnode serve` process with its processors loaded by `--import`, sharing the
session's Redis and SecantusDB (one key prefix: one cluster).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobnode.client import AsyncClient, ClientError
from jobnode.dev.embedded import free_port
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

RESIZE_MODULE = textwrap.dedent('''
    import asyncio
    from jobnode.processors import register_processor

    @register_processor("resize", payload={
        "type": "object",
        "properties": {"width": {"type": "integer", "minimum": 1}},
        "required": ["width"],
    })
    async def resize(job):
        """Pretend to resize an image."""
        await asyncio.sleep(0.01)
        return {"width": job.payload["width"]}
''')


class Nodes:
    """Start and stop `jobnode serve` processes of one cluster."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path = tmp_path
        self.env = env
        self.ports: dict[str, int] = {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        (tmp_path / "resize_jobs.py").write_text(RESIZE_MODULE)

    def url(self, node_id: str) -> str:
        return f"http://127.0.0.1:{self.ports[node_id]}"

    async def start(self, node_id: str, *args: str) -> str:
        port = self.ports.setdefault(node_id, free_port())
        env = {**self.env, "NODE_ID": node_id, "SERVER_PORT": str(port), "DATA_DIR": str(self.tmp_path / node_id)}
        log = open(self.tmp_path / f"{node_id}.log", "ab")
        self.processes[node_id] = subprocess.Popen([sys.executable, "-m", "jobnode", "serve", *args],
                                                   cwd=self.tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        async with AsyncClient(self.url(node_id), max_attempts=1) as client:
            await wait_until(lambda: _healthy(client), timeout_s=60, message=f"{node_id} never became healthy")
        return self.url(node_id)

    async def stop(self, node_id: str) -> None:
        process = self.processes.pop(node_id)
        process.send_signal(signal.SIGTERM)
        await wait_until(lambda: process.poll() is not None, timeout_s=30, message=f"{node_id} did not stop")
        assert process.returncode == 0, (self.tmp_path / f"{node_id}.log").read_text()[-3000:]

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()


@pytest.fixture
def nodes(tmp_path, redis_server, mongo_server, key_prefix, mongo_db_name) -> Iterator[Nodes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("JOBNODE_")}
    env |= {"SERVER_HOST": "127.0.0.1", "METRICS_ENABLED": "false", "REDIS_ADDR": redis_server.url,
            "MONGODB_URI": mongo_server.url, "MONGODB_DATABASE": mongo_db_name, "REDIS_KEY_PREFIX": key_prefix,
            "WORKER_COUNT": "2", "LOG_FORMAT": "json", "WORKER_HEARTBEAT_INTERVAL": "200ms", "WORKER_TTL": "1s",
            "JOB_LEASE_TTL": "3s", "SHUTDOWN_GRACE": "5s"}
    started = Nodes(tmp_path, env)
    yield started
    started.kill_all()


async def _healthy(client: AsyncClient) -> bool:
    try:
        return (await client.health()).get("status") == "ok"
    except ClientError:
        return False


async def finished(client: AsyncClient, ids: list[str], timeout_s: float = 60) -> list[dict]:
    return await client.wait_many(ids, timeout_s=timeout_s)


async def test_a_type_only_node_2_has_runs_there_waits_while_it_is_away_and_runs_when_it_is_back(nodes):
    url1 = await nodes.start("node-1")
    await nodes.start("node-2", "--import", "resize_jobs")
    async with AsyncClient(url1) as node1:
        first = [(await node1.submit("resize", {"width": i + 1}))["id"] for i in range(10)]
        done = await finished(node1, first)
        assert {(job["status"], job["node_id"]) for job in done} == {("completed", "node-2")}

        await nodes.stop("node-2")
        waiting = [(await node1.submit("resize", {"width": i + 1}))["id"] for i in range(10)]
        echoes = [(await node1.submit("echo", {"n": i}))["id"] for i in range(10)]
        assert {job["status"] for job in await finished(node1, echoes)} == {"completed"}
        stats = await node1.stats()
        assert stats["queue"]["unroutable"] == [{"queue": "default", "type": "resize", "jobs": 10}]
        assert {(await node1.get(job_id))["status"] for job_id in waiting} == {"pending"}

        await nodes.start("node-2", "--import", "resize_jobs")
        done = await finished(node1, waiting)
        assert {(job["status"], job["node_id"]) for job in done} == {("completed", "node-2")}
        assert (await node1.stats())["queue"]["unroutable"] == []


async def test_a_rolling_restart_that_adds_a_type_loses_and_dead_letters_nothing(nodes):
    url1 = await nodes.start("node-1")
    url2 = await nodes.start("node-2")
    accepted: list[str] = []
    refused: list[str] = []
    stop = asyncio.Event()

    async def submitter(url: str) -> None:
        async with AsyncClient(url, max_attempts=1) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    job = await client.submit("resize", {"width": n}, idempotency_key=f"{url}-{n}")
                    accepted.append(job["id"])
                except ClientError as exc:  # unknown type before the first new node, or a node restarting
                    refused.append(getattr(exc, "code", type(exc).__name__))
                await asyncio.sleep(0.02)

    tasks = [asyncio.create_task(submitter(url)) for url in (url1, url2)]
    try:
        await nodes.stop("node-1")
        await nodes.start("node-1", "--import", "resize_jobs")
        await wait_until(lambda: len(accepted) >= 20, timeout_s=30, message="no resize job was accepted")
        await nodes.stop("node-2")
        await nodes.start("node-2", "--import", "resize_jobs")
        count = len(accepted)
        await wait_until(lambda: len(accepted) >= count + 20, timeout_s=30, message="submissions stopped")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    async with AsyncClient(url1) as node1:
        done = await finished(node1, accepted, timeout_s=120)
        assert {job["status"] for job in done} == {"completed"}
        assert (await node1.stats())["queue"]["dead_letter"] == 0
    assert set(refused) <= {"invalid_request", "connection_failed", "unavailable", "overloaded"}, refused
