"""Auth as an operator meets it: `jobnode serve` refusing a weak JWT_SECRET, `jobnode dev --secure` (auth and TLS)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from jobnode.client import AsyncClient, AuthError, ConnectionFailed
from jobnode.dev.embedded import free_port
from tests.waiting import wait_until


@pytest.mark.parametrize("secret, reason", [
    (None, "required when AUTH_ENABLED=true"),
    ("changeme", "well-known default"),
    ("a-short-secret-2718", "fewer than 32"),
])
def test_serve_refuses_to_start_with_auth_on_and_a_weak_jwt_secret(tmp_path: Path, secret, reason):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "AUTH_", "ADMIN_"))}
    env |= {"AUTH_ENABLED": "true", "METRICS_ENABLED": "false"} | ({"JWT_SECRET": secret} if secret else {})
    done = subprocess.run([sys.executable, "-m", "jobnode", "serve"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "JWT_SECRET" in done.stderr and reason in done.stderr
    if secret:
        assert secret not in done.stderr + done.stdout


@pytest.mark.slow
async def test_dev_secure_generates_credentials_and_protects_the_api(tmp_path: Path):
    port, metrics_port = free_port(), free_port()
    data_dir = tmp_path / "dev"
    command = [sys.executable, "-m", "jobnode", "dev", "--secure", "--nodes", "1", "--port", str(port),
               "--metrics-port", str(metrics_port), "--data-dir", str(data_dir), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDR", "MONGODB_URI", "JWT_SECRET",
                                                             "ADMIN_PASSWORD", "ADMIN_USERNAME")}
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        cluster_file = data_dir / "cluster.json"
        await wait_until(cluster_file.exists, timeout_s=90, message="cluster.json never appeared")
        assert stat.S_IMODE(cluster_file.stat().st_mode) == 0o600
        cluster = json.loads(cluster_file.read_text())
        admin = cluster["admin"]
        assert (cluster["admin_username"], cluster["admin_password"], cluster["admin_token"]) == (
            admin["username"], admin["password"], admin["token"])
        assert len(admin["password"]) >= 16
        url, ca_file = cluster["nodes"][0]["url"], cluster["ca_file"]
        assert url.startswith("https://") and Path(ca_file).is_file()
        async with AsyncClient(url, token=admin["token"]) as unverified:
            with pytest.raises(ConnectionFailed):  # the development CA is not in the system's trust store
                await unverified.nodes()
        async with AsyncClient(url, ca_file=ca_file) as anonymous:
            with pytest.raises(AuthError):
                await anonymous.nodes()
        async with AsyncClient(url, token=admin["token"], ca_file=ca_file) as client:
            assert (await client.nodes())["nodes"][0]["id"] == "node-1"
        async with AsyncClient(url, ca_file=ca_file) as fresh:
            assert (await fresh.login(admin["username"], admin["password"]))["role"] == "admin"
        async with AsyncClient(url, token=admin["token"], ca_file=ca_file) as client:
            assert (await client.stats())["rate_limit"]["enabled"] is True
        await _assert_backends_need_credentials(cluster)
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        for private in (data_dir / "node-1" / "node.log", data_dir / "redis" / "redis.log"):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
        printed = log_path.read_text()
        assert admin["password"] in printed and admin["token"] in printed  # shown to the developer

        def login_line() -> str | None:
            return next((line.split("or: ", 1)[1] for line in log_path.read_text().splitlines()
                         if "jobnode login" in line), None)

        # The printed CLI login works as printed (with this interpreter's jobnode).
        login = (await wait_until(login_line, timeout_s=30, message="no CLI login line printed")).replace(
            "jobnode login", f"{sys.executable} -m jobnode login")
        assert f"--ca-file {ca_file}" in login
        done = await asyncio.to_thread(subprocess.run, ["bash", "-c", login], capture_output=True, text=True,
                                       env=env | {"JOBNODE_TOKEN_FILE": str(tmp_path / "tokens.json")})
        assert done.returncode == 0 and "role admin" in done.stdout, done.stderr
        node_log = (data_dir / "node-1" / "node.log").read_text()
        assert admin["password"] not in node_log and admin["token"] not in node_log
        process.send_signal(signal.SIGINT)
        await wait_until(lambda: process.poll() is not None, timeout_s=60, message="dev did not stop")
        assert process.returncode == 0
    finally:
        if process.poll() is None:
            process.kill()


async def _assert_backends_need_credentials(cluster: dict) -> None:
    redis_url, mongodb_uri = cluster["redis_url"], cluster["mongodb_uri"]
    parts, mongo_parts = urlsplit(redis_url), urlsplit(mongodb_uri)
    assert parts.password and mongo_parts.password
    anonymous = Redis(host=parts.hostname, port=parts.port, socket_connect_timeout=2)
    try:
        with pytest.raises(redis_errors.AuthenticationError):
            await anonymous.set("jobnode:leader", "intruder")
    finally:
        await anonymous.aclose()
    stranger = AsyncMongoClient(f"mongodb://{mongo_parts.hostname}:{mongo_parts.port}", directConnection=True,
                                serverSelectionTimeoutMS=5000)
    try:
        with pytest.raises(OperationFailure):
            await stranger.jobprocessor.users.insert_one({"_id": "intruder", "role": "admin"})
    finally:
        await stranger.close()


@pytest.mark.slow
async def test_dev_with_a_tight_rate_limit_still_starts(tmp_path: Path):
    port, metrics_port = free_port(), free_port()
    data_dir = tmp_path / "dev"
    command = [sys.executable, "-m", "jobnode", "dev", "--nodes", "2", "--port", str(port),
               "--metrics-port", str(metrics_port), "--data-dir", str(data_dir), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDR", "MONGODB_URI")}
    env["RATE_LIMIT"] = "30"
    with open(tmp_path / "dev.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        await wait_until(lambda: (data_dir / "cluster.json").exists() or process.poll() is not None,
                         timeout_s=120, message="jobnode dev neither became ready nor exited")
        assert process.poll() is None, (tmp_path / "dev.log").read_text()[-2000:]
        process.send_signal(signal.SIGINT)
        await wait_until(lambda: process.poll() is not None, timeout_s=60, message="dev did not stop")
    finally:
        if process.poll() is None:
            process.kill()
