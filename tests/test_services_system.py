"""SystemService's health report and the rate limiter's fail-open policy, without a running node."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from redis.asyncio import Redis

from jobnode.core.errors import Unavailable
from jobnode.core.settings import Settings
from jobnode.dev.embedded import free_port
from jobnode.services.rate_limiter import RateLimiter
from jobnode.services.system import SystemService
from jobnode.storage.redis.rate_buckets import BucketSpend, RateBuckets


def system(probes) -> SystemService:
    settings = Settings.from_env({"NODE_ID": "node-7"}, env_file=None)
    leadership = SimpleNamespace(is_leader=True)
    return SystemService(settings, jobs=None, queue=None, leadership=leadership, pool=None,  # type: ignore[arg-type]
                         probes=probes)


async def answers() -> str:
    return "PONG"


async def refuses() -> None:
    raise ConnectionError("Error 111 connecting to 127.0.0.1:16888. Connection refused.")


async def test_healthy_when_every_probe_answers():
    health = await system({"redis": answers, "mongodb": answers}).health()
    assert health.ok
    assert health.report["status"] == "ok" and health.report["node_id"] == "node-7"
    assert health.report["is_leader"] is True
    assert list(health.report["checks"]) == ["redis", "mongodb"]
    assert all(check["ok"] and check["latency_ms"] >= 0 for check in health.report["checks"].values())


async def test_one_failing_probe_makes_the_node_unavailable_and_says_which():
    health = await system({"redis": answers, "mongodb": refuses}).health()
    assert not health.ok and health.report["status"] == "unavailable"
    assert health.report["checks"]["redis"]["ok"]
    failed = health.report["checks"]["mongodb"]
    # /health is public: it names the dependency, never the driver's text with internal addresses.
    assert failed == {"ok": False, "error": "mongodb unavailable"}


async def test_a_probe_that_raises_before_awaiting_is_a_failed_check_too():
    def broken():
        raise RuntimeError("no client")

    health = await system({"redis": broken}).health()
    assert not health.ok and health.report["checks"]["redis"]["error"] == "redis unavailable"


async def test_a_failed_advisory_check_degrades_but_keeps_the_node_ready():
    service = system({"redis": answers})
    service.advisories = {"quorum": lambda: {"ok": False, "reason": "no majority"}}
    health = await service.health()
    assert health.ok and health.report["status"] == "degraded"
    assert health.report["checks"]["quorum"] == {"ok": False, "reason": "no majority", "required": False}
    service.advisories = {"quorum": lambda: {"ok": True}}
    assert (await service.health()).report["status"] == "ok"


class ScriptedBuckets:
    """Buckets whose answers the test decides: a BucketSpend, or an exception to raise."""

    def __init__(self, *answers) -> None:
        self.answers = list(answers)

    async def spend(self, client: str, rate_per_min: int, capacity: int) -> BucketSpend:
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_the_limiter_counts_decisions_and_fails_open_when_redis_cannot_say():
    buckets = ScriptedBuckets(BucketSpend(True, 1, 2.0, 0.0), BucketSpend(False, 0, 3.0, 1.5),
                              Unavailable("redis is unreachable"), TimeoutError())
    limiter = RateLimiter(buckets, rate_per_min=60, burst=2)  # type: ignore[arg-type]
    allowed, refused = await limiter.check("ip:a"), await limiter.check("ip:a")
    assert (allowed.allowed, allowed.limit, allowed.remaining, allowed.reset_s) == (True, 2, 1, 2.0)
    assert (refused.allowed, refused.retry_after_s) == (False, 1.5)
    assert await limiter.check("ip:a") is None
    assert await limiter.check("ip:a") is None
    assert limiter.counters() == {"enabled": True, "rate_per_min": 60, "burst": 2,
                                  "allowed": 1, "limited": 1, "fail_open": 2}


async def test_a_burst_of_zero_means_the_rate():
    assert RateLimiter(ScriptedBuckets(), rate_per_min=30, burst=0).capacity == 30  # type: ignore[arg-type]


async def test_an_unreachable_redis_is_unavailable_at_the_bucket_boundary(key_prefix):
    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    try:
        with pytest.raises(Unavailable):
            await RateBuckets(dead, key_prefix).spend("ip:a", 60, 1)
    finally:
        await dead.aclose()


async def test_a_worker_silent_for_worker_ttl_is_listed_as_dead_not_idle(redis_client, key_prefix):
    from jobnode.storage.redis.queue import JobQueue

    queue = JobQueue(redis_client, key_prefix)
    await queue.register("node-live", 2, ["live-1"])
    await queue.register("node-gone", 2, ["gone-1"])
    # node-gone was killed a minute ago: its last heartbeat is that old, and no leader has reaped it yet.
    await redis_client.zadd(queue.key("seen"), {"gone-1": (await redis_client.time())[0] * 1000 - 60_000})
    settings = Settings.from_env({"NODE_ID": "node-live", "WORKER_TTL": "5s"}, env_file=None)
    service = SystemService(settings, jobs=None, queue=queue, leadership=None, pool=None,  # type: ignore[arg-type]
                            probes={})

    states = {row["id"]: row["state"] for row in await service.workers()}

    assert states == {"live-1": "idle", "gone-1": "dead"}
