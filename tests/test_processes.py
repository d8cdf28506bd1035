"""The commands as an operator runs them: `jobnode dev` and `jobnode serve` as real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from jobnode.client import AsyncClient
from jobnode.dev.embedded import EmbeddedMongo, free_port
from tests.waiting import wait_until


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDR", "MONGODB_URI")}
    env.update(extra)
    return env


async def _exits(process: subprocess.Popen, timeout_s: float) -> int:
    return await wait_until(lambda: process.poll() is not None, timeout_s=timeout_s,
                            message="process did not exit") and process.returncode


async def test_dev_starts_an_embedded_node_that_runs_jobs_and_stops_cleanly(tmp_path: Path):
    port, metrics_port = free_port(), free_port()
    data_dir = tmp_path / "dev"
    command = [sys.executable, "-m", "jobnode", "dev", "--nodes", "1", "--port", str(port),
               "--metrics-port", str(metrics_port), "--data-dir", str(data_dir), "--workers", "2"]
    log = open(tmp_path / "dev.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        cluster_file = data_dir / "cluster.json"
        await wait_until(cluster_file.exists, timeout_s=90, message="cluster.json never appeared")
        cluster = json.loads(cluster_file.read_text())
        assert set(cluster) == {"algorithm", "redis_url", "mongodb_uri", "redis_pid", "mongodb_pid", "admin",
                                "ca_file", "nodes", "cluster_secret", "node_environment"}
        servers = [cluster["redis_pid"], cluster["mongodb_pid"]]
        assert all(isinstance(pid, int) and _alive(pid) for pid in servers)
        node = cluster["nodes"][0]
        assert node["id"] == "node-1" and node["url"] == f"http://127.0.0.1:{port}"
        async with AsyncClient(node["url"]) as client:
            job = await client.submit("echo", {"from": "dev"})
            done = await client.wait(job["id"], timeout_s=30)
            assert done["status"] == "completed" and done["result"] == {"from": "dev"}
        process.send_signal(signal.SIGINT)
        assert await _exits(process, 60) == 0
        said = (tmp_path / "dev.log").read_text()
        assert "stopping 1 node(s)" in said and "killing" not in said  # the node stopped by itself
        # Everything it started is gone with it.
        for pid in [n["pid"] for n in cluster["nodes"]] + servers:
            await wait_until(lambda pid=pid: not _alive(pid), timeout_s=10, message=f"{pid} outlived dev")
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


async def test_serve_finishes_running_jobs_on_sigterm(tmp_path: Path, redis_server, mongo_server, key_prefix,
                                                      mongo_db_name, mongo_client):
    port = free_port()
    env = _env(NODE_ID="node-s", SERVER_HOST="127.0.0.1", SERVER_PORT=str(port), METRICS_ENABLED="false",
               REDIS_ADDR=redis_server.url, MONGODB_URI=mongo_server.url, MONGODB_DATABASE=mongo_db_name,
               REDIS_KEY_PREFIX=key_prefix, WORKER_COUNT="1", SHUTDOWN_GRACE="20s", LOG_FORMAT="json",
               DATA_DIR=str(tmp_path / "node"))
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "jobnode", "serve"], stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with AsyncClient(url, max_attempts=1) as client:
            await wait_until(lambda: _healthy(client), timeout_s=60, message="node never became healthy")
            job = await client.submit("sleep", {"seconds": 1.0})
            await wait_until(lambda: _status_is(client, job["id"], "running"), timeout_s=15,
                             message="job never started")
            process.send_signal(signal.SIGTERM)
            assert await _exits(process, 30) == 0
        doc = await mongo_client[mongo_db_name].jobs.find_one({"_id": job["id"]})
        assert doc["status"] == "completed" and doc["attempts"] == 1
        lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{")]
        assert any(line.get("event") == "node.stopped" for line in lines)
    finally:
        if process.poll() is None:
            process.kill()
        log.close()


async def test_serve_started_while_mongodb_is_down_waits_for_it_and_becomes_ready(tmp_path: Path, redis_server,
                                                                                   key_prefix, mongo_db_name):
    mongo_port, port = free_port(), free_port()
    mongo = EmbeddedMongo(tmp_path / "mongodb", port=mongo_port)  # not started yet: nothing listens there
    env = _env(NODE_ID="node-w", SERVER_HOST="127.0.0.1", SERVER_PORT=str(port), METRICS_ENABLED="false",
               REDIS_ADDR=redis_server.url, MONGODB_URI=f"mongodb://127.0.0.1:{mongo_port}/",
               MONGODB_DATABASE=mongo_db_name, MONGODB_TIMEOUT="1s", REDIS_KEY_PREFIX=key_prefix, WORKER_COUNT="1",
               LOG_FORMAT="json", DATA_DIR=str(tmp_path / "node"))
    log = open(tmp_path / "serve.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "jobnode", "serve"], stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            waiting = await wait_until(lambda: _health(http, url, 503), timeout_s=60, interval_s=0.2,
                                       message="the node never said it waits for MongoDB")
            assert set(waiting) == {"status", "node_id", "is_leader", "leader_id", "checks"}
            assert waiting["checks"]["startup"] == {"ok": False, "error": "starting: waiting for mongodb"}
            assert waiting["checks"]["mongodb"]["ok"] is False and waiting["checks"]["redis"]["ok"] is True
            async with http.post(f"{url}/api/v1/jobs", json={"type": "echo", "payload": {}}) as refused:
                assert refused.status == 503
                assert "waiting for mongodb" in (await refused.json())["error"]["message"]
            assert process.poll() is None
            await asyncio.to_thread(mongo.start)
            ready = await wait_until(lambda: _health(http, url, 200), timeout_s=60, interval_s=0.2,
                                     message="the node never became ready once MongoDB was up")
            assert "startup" not in ready["checks"]
        async with AsyncClient(url, max_attempts=1) as client:
            job = await client.submit("echo", {"after": "outage"})
            assert (await client.wait(job["id"], timeout_s=30))["status"] == "completed"
        process.send_signal(signal.SIGTERM)
        assert await _exits(process, 30) == 0
        events = [json.loads(line).get("event") for line in (tmp_path / "serve.log").read_text().splitlines()
                  if line.startswith("{")]
        assert "node.start_waiting" in events and "node.ready" in events
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
        await asyncio.to_thread(mongo.stop)


async def _health(http: aiohttp.ClientSession, url: str, status: int) -> dict | None:
    try:
        async with http.get(f"{url}/health") as resp:
            return await resp.json() if resp.status == status else None
    except aiohttp.ClientError:
        return None


def test_serve_refuses_a_bad_setting_naming_it():
    result = subprocess.run([sys.executable, "-m", "jobnode", "serve"], capture_output=True, text=True,
                            env=_env(ELECTION_TIMEOUT="soon"), timeout=60)
    assert result.returncode == 2
    assert "ELECTION_TIMEOUT" in result.stderr and "soon" in result.stderr
    assert "Traceback" not in result.stderr


async def _healthy(client: AsyncClient) -> bool:
    try:
        return (await client.health()).get("status") == "ok"
    except Exception:
        return False


async def _status_is(client: AsyncClient, job_id: str, status: str) -> bool:
    return (await client.get(job_id))["status"] == status


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
