"""`jobnode dev add-node`: what cluster.json carries for a new node, and the command end to end."""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from jobnode.dev.cluster import Backends, NodePlan, _node_environment, _write_cluster_file, shared_environment
from jobnode.dev.embedded import free_port
from tests.waiting import wait_until


def test_the_shared_environment_is_what_every_node_got_but_its_own_settings(tmp_path: Path):
    args = argparse.Namespace(algorithm="raft", workers=4, strategy=None, imports=[])
    plans = [NodePlan("node-1", 8300, 9400, tmp_path / "node-1"), NodePlan("node-2", 8301, 9401, tmp_path / "node-2")]
    backends = Backends(redis_url="redis://127.0.0.1:1/0", mongodb_uri="mongodb://127.0.0.1:2")
    env = _node_environment(plans[0], plans, backends, args, "s" * 43, {"PATH": "/bin", "HOME": "/root"})
    shared = shared_environment(env)
    assert shared["CLUSTER_SECRET"] == "s" * 43 and shared["ELECTION_ALGORITHM"] == "raft"
    assert shared["REDIS_ADDR"] == backends.redis_url and shared["WORKER_COUNT"] == "4"
    assert not {"NODE_ID", "SERVER_PORT", "ADVERTISE_URL", "PEERS", "DATA_DIR", "PATH", "HOME"} & shared.keys()

    path = tmp_path / "cluster.json"
    _write_cluster_file(path, "raft", backends, [], shared_env=shared)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "cluster.json holds the cluster secret"
    document = json.loads(path.read_text())
    assert document["cluster_secret"] == "s" * 43 and document["node_environment"] == shared


def test_add_node_without_a_running_cluster_says_so(tmp_path: Path):
    result = subprocess.run([sys.executable, "-m", "jobnode", "dev", "add-node", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"no `jobnode dev` cluster at {tmp_path}" in result.stderr


def cluster_members(url: str) -> set[str]:
    with urllib.request.urlopen(f"{url}/api/v1/cluster", timeout=5) as response:
        return {m["id"] for m in json.loads(response.read())["members"] if m["state"] != "left"}


@pytest.mark.slow
async def test_add_node_joins_a_running_dev_cluster_and_dev_stops_it(tmp_path: Path):
    data_dir = tmp_path / "dev"
    command = [sys.executable, "-m", "jobnode", "dev", "--nodes", "1", "--algorithm", "gossip",
               "--port", str(free_port()), "--metrics-port", str(free_port()), "--data-dir", str(data_dir),
               "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDR", "MONGODB_URI")}
    with open(tmp_path / "dev.log", "wb") as log:
        dev = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        await wait_until(lambda: (data_dir / "cluster.json").exists() or dev.poll() is not None,
                         timeout_s=120, message="jobnode dev neither became ready nor exited")
        assert dev.poll() is None, (tmp_path / "dev.log").read_text()[-2000:]
        added = subprocess.run([sys.executable, "-m", "jobnode", "dev", "add-node", "--data-dir", str(data_dir),
                                "--port", str(free_port()), "--metrics-port", str(free_port())],
                               capture_output=True, text=True, timeout=90, env=env)
        assert added.returncode == 0, added.stdout + added.stderr
        document = json.loads((data_dir / "cluster.json").read_text())
        assert stat.S_IMODE((data_dir / "cluster.json").stat().st_mode) == 0o600
        first, new = document["nodes"]
        assert new["id"] == "node-2" and f"node-2 joined: {new['url']}" in added.stdout
        await wait_until(lambda: cluster_members(first["url"]) == {"node-1", "node-2"}, timeout_s=15,
                         message="node-1 never listed the added node")
        dev.send_signal(signal.SIGINT)
        await wait_until(lambda: dev.poll() is not None, timeout_s=60, message="dev did not stop")
        assert "stopping node-2 (added" in (tmp_path / "dev.log").read_text()
        with pytest.raises(ProcessLookupError):
            os.kill(new["pid"], 0)
    finally:
        if dev.poll() is None:
            dev.kill()
