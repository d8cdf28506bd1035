"""`jobnode dev`'s own parts: what it gives each node under --secure, and a readiness check a rate limit cannot starve."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from types import SimpleNamespace

from jobnode.dev.cluster import Backends, Credentials, NodePlan, _node_environment, _readiness
from tests.harness import start_node  # noqa: F401  (fixture)


def _environment(environ: dict[str, str]) -> dict[str, str]:
    plan = NodePlan("node-1", 8080, 9090, Path("/tmp/dev/node-1"))
    args = argparse.Namespace(algorithm="raft", workers=1, strategy=None)
    backends = Backends(redis_url="redis://127.0.0.1:1/0", mongodb_uri="mongodb://127.0.0.1:2")
    return _node_environment(plan, [plan], backends, args, "ab" * 32, environ, Credentials.generate())


def test_secure_turns_a_rate_limit_on_unless_the_environment_sets_one():
    assert _environment({})["RATE_LIMIT"] == "1200"
    assert _environment({"RATE_LIMIT": "30"})["RATE_LIMIT"] == "30"


async def test_readiness_asks_only_routes_a_rate_limit_cannot_refuse(start_node):
    client = await start_node(WORKER_COUNT="0", RATE_LIMIT="1", RATE_LIMIT_BURST="1")
    node = SimpleNamespace(plan=SimpleNamespace(id="node-1", url=str(client.make_url("")).rstrip("/")))
    for _ in range(5):  # a bucket of one token would have refused the second round
        ready, _leader, awaited = await asyncio.to_thread(_readiness, [node], True, None)
        assert awaited == "" or "leaders" in awaited, awaited
    health = await (await client.get("/health")).json()
    assert "leader_id" in health
