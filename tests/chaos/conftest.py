"""Fixtures for the chaos suite: a 3-process cluster under steady load, faults, and the history check.

`chaos` gives a `ChaosRun`: start a cluster (tests/cluster_harness.py) whose nodes load the
`history` processor, start the load generator and the state watcher, inject faults through
its methods (each one is written down with its time for the checker), then `finish()`:
stop the load, wait until every acknowledged job is finished in MongoDB and Redis agrees,
run the checker, print its JSON summary and fail the test on any violation.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient

from jobnode.core.settings import parse_duration_s
from jobnode.dev.embedded import EmbeddedMongo, EmbeddedRedis, with_uri_options
from tools.chaos.load import LoadGenerator
from tools.chaos.recording import install_plugin, monotonic_s
from tests.cluster_harness import Cluster, config_env
from tools.chaos.history import (
    EndState, Faults, LeaseTiming, Report, StateWatcher, check, disagreements, outcome_failures, read_end_state,
    read_runs,
)
from tests.waiting import wait_until

SETTLE_TIMEOUT_S = 60.0
READ_TIMEOUT_S = 10.0
APP_NAME = "jobnode-chaos"  # MongoDB failpoints are scoped to the nodes' connections by it


class ChaosRun:
    """One chaos test's cluster, load, faults and checker."""

    def __init__(self, root: Path, redis_url: str, mongo_url: str, prefix: str, db_name: str,
                 mongo_client: AsyncMongoClient) -> None:
        self.root = root
        self.redis_url, self.mongo_url = redis_url, mongo_url
        self.prefix, self.db_name = prefix, db_name
        self.record_dir = root / "history"
        self.record_dir.mkdir(parents=True, exist_ok=True)
        self.pythonpath = install_plugin(root / "plugin")
        self.faults = Faults()
        self.cluster: Cluster | None = None
        self.load: LoadGenerator | None = None
        self.watcher: StateWatcher | None = None
        self.redis = aioredis.Redis.from_url(redis_url, socket_timeout=5)
        self.mongo_client = mongo_client
        self._own_mongo_client: AsyncMongoClient | None = None
        self.app_name = f"{APP_NAME}-{prefix[-8:]}"
        self.timing = LeaseTiming(ttl_s=3.0, worker_ttl_s=1.0, heartbeat_s=0.2)
        self.paused: set[str] = set()
        self.acked: dict[str, str] = {}
        self._failpoint_on = False
        self.report: Report | None = None

    @property
    def db(self) -> Any:
        return self.mongo_client[self.db_name]

    async def use(self, *, redis_url: str | None = None, mongo_url: str | None = None) -> None:
        """Run on other data servers than the session's (call before `start`)."""
        if redis_url is not None:
            await self.redis.aclose()
            self.redis_url, self.redis = redis_url, aioredis.Redis.from_url(redis_url, socket_timeout=5)
        if mongo_url is not None:
            self.mongo_url = mongo_url
            self._own_mongo_client = AsyncMongoClient(mongo_url, serverSelectionTimeoutMS=10_000)
            self.mongo_client = self._own_mongo_client

    # -- start ---------------------------------------------------------------------------

    async def start(self, algorithm: str, *, nodes: int = 3, redis_url: str | None = None,
                    mongo_url: str | None = None, **env: str) -> Cluster:
        """Start the cluster; `redis_url`/`mongo_url` replace what the nodes use (a proxy, say)."""
        node_mongo = mongo_url or self.mongo_url
        backends = {"REDIS_ADDR": redis_url or self.redis_url,
                    "MONGODB_URI": with_uri_options(node_mongo, appName=self.app_name),
                    "REDIS_KEY_PREFIX": self.prefix, "MONGODB_DATABASE": self.db_name}
        merged = {**config_env(algorithm), **env}
        self.timing = LeaseTiming(ttl_s=parse_duration_s(merged["JOB_LEASE_TTL"]),
                                  worker_ttl_s=parse_duration_s(merged["WORKER_TTL"]),
                                  heartbeat_s=parse_duration_s(merged["WORKER_HEARTBEAT_INTERVAL"]))
        self.cluster = Cluster(self.root / "cluster", algorithm, nodes, backends,
                               {"PYTHONPATH": self.pythonpath, **env})
        await self.cluster.start()
        return self.cluster

    def start_load(self, **options: Any) -> LoadGenerator:
        self.load = LoadGenerator(self.targets, self.record_dir, **options).start()
        self.watch(self.load.acked)
        return self.load

    def watch(self, acked: dict[str, str]) -> None:
        """Check these acknowledged jobs (id -> expected status); the load generator's by default."""
        self.acked = acked
        self.watcher = StateWatcher(self.db, self.redis, self.prefix, acked).start()

    def targets(self) -> list[str]:
        assert self.cluster is not None
        return [self.cluster.nodes[n].url for n in self.cluster.live if n not in self.paused]

    async def wait_acked(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until `count` more jobs than now were acknowledged."""
        assert self.load is not None
        goal = len(self.load.acked) + count
        await wait_until(lambda: len(self.load.acked) >= goal, timeout_s=timeout_s,
                         message=f"fewer than {goal} jobs acknowledged; refused: {dict(self.load.refused)}")

    async def wait_runs(self, count: int, timeout_s: float = 60.0) -> None:
        """Wait until the record holds `count` more finished runs than now."""
        def finished() -> int:
            return sum(1 for runs in read_runs(self.record_dir).values() for r in runs if r.end is not None)

        goal = finished() + count
        await wait_until(lambda: finished() >= goal, timeout_s=timeout_s,
                         message=f"fewer than {goal} runs finished")

    # -- faults --------------------------------------------------------------------------

    def kill(self, node_id: str) -> None:
        """kill -9 one node, noted for the checker (its unfinished runs end now)."""
        assert self.cluster is not None
        node = self.cluster.nodes[node_id]
        self.faults.killed(node.process.pid, node_id)
        self.cluster.kill(node_id)

    async def pause(self, node_id: str, seconds: float) -> None:
        """SIGSTOP one node for `seconds`, then SIGCONT: a blackout of its leases."""
        assert self.cluster is not None
        process = self.cluster.nodes[node_id].process
        self.paused.add(node_id)
        start = monotonic_s()
        process.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)  # the fault's duration, not a synchronisation
        finally:
            process.send_signal(signal.SIGCONT)
            self.paused.discard(node_id)
            self.faults.blackout("sigstop", start, monotonic_s(), [node_id])

    async def fail_mongo(self, mode: Any = "alwaysOn", **data: Any) -> None:
        """Turn on SecantusDB's `failCommand` failpoint for the nodes' connections only."""
        self._failpoint_on = True
        await self.mongo_client.admin.command("configureFailPoint", "failCommand", mode=mode,
                                              data={"appName": self.app_name, **data})

    async def heal_mongo(self) -> None:
        await self.mongo_client.admin.command("configureFailPoint", "failCommand", mode="off")
        self._failpoint_on = False

    # -- the check -----------------------------------------------------------------------

    async def settle(self, timeout_s: float = SETTLE_TIMEOUT_S) -> EndState:
        """Wait until every acknowledged job is finished in MongoDB and Redis agrees with it."""
        last: dict[str, Any] = {}

        async def settled() -> EndState | None:
            # Bounded: one read that the server stalls must not outlast the whole deadline
            # (a CI run once hung here past pytest's timeout with no clue why).
            end = await asyncio.wait_for(read_end_state(self.db, self.redis, self.prefix), READ_TIMEOUT_S)
            last["outcomes"] = outcome_failures(self.acked, end)[:5]
            last["disagreements"] = disagreements(end)[:5]
            return end if not last["outcomes"] and not last["disagreements"] else None

        try:
            return await wait_until(settled, timeout_s=timeout_s, interval_s=0.5, ignore=(Exception,),
                                    message="the cluster never settled")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last: {last}") from None

    async def finish(self, settle_timeout_s: float = SETTLE_TIMEOUT_S) -> Report:
        """Stop the load, let the cluster settle, check the history; fails the test on a violation."""
        assert self.watcher is not None
        if self.load is not None:
            await self.load.stop()
        try:
            await self.settle(settle_timeout_s)
        finally:
            await self.watcher.sample_once()
            await self.watcher.stop()
        end = await read_end_state(self.db, self.redis, self.prefix)
        refused = self.load.refused if self.load is not None else {}
        self.report = check(self.acked, read_runs(self.record_dir), self.watcher.samples, end,
                            self.faults, self.timing, refused)
        print("history check:", json.dumps(self.report.summary()))
        assert self.report.ok, json.dumps(self.report.summary(), indent=1)
        assert "500" not in refused, f"the API answered 500: {dict(refused)}"
        return self.report

    async def close(self) -> None:
        if self._failpoint_on:  # never leave the shared server failing commands
            await self.heal_mongo()
        if self.load is not None and self.load._task is not None and not self.load._task.done():
            await self.load.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        if self.cluster is not None:
            for node_id in self.paused:
                self.cluster.nodes[node_id].process.send_signal(signal.SIGCONT)
            await self.cluster.close()
            print(self.cluster.log_tails())
        await self.redis.aclose()
        if self._own_mongo_client is not None:
            await self._own_mongo_client.close()


@pytest.fixture
async def chaos(tmp_path: Path, redis_server: EmbeddedRedis, mongo_server: EmbeddedMongo, key_prefix: str,
                mongo_db_name: str, mongo_client: AsyncMongoClient, redis_client) -> AsyncIterator[ChaosRun]:
    """A `ChaosRun` on the session's Redis and SecantusDB (the test's own key prefix and database)."""
    run = ChaosRun(tmp_path, redis_server.url, mongo_server.url, key_prefix, mongo_db_name, mongo_client)
    try:
        yield run
    finally:
        await run.close()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A Redis of this test's own (AOF on), for faults the shared one must not suffer.

    Ask for it before `chaos`, so it is torn down after the cluster and clients using it.
    """
    server = EmbeddedRedis(tmp_path / "private-redis")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.kill)  # throwaway data: no need to wait for a clean stop


@pytest.fixture
async def private_mongo(tmp_path: Path) -> AsyncIterator[EmbeddedMongo]:
    """A SecantusDB of this test's own (test commands on), for faults the shared one must not suffer.

    Ask for it before `chaos`: a MongoDB client closed after its server is gone waits for it.
    """
    server = EmbeddedMongo(tmp_path / "private-mongo", test_commands=True)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.kill)  # also ends it if a failed test left it paused
