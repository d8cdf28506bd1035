"""A Redis at its memory limit with noeviction, as the compose files run it: submits get 503, not 500."""

from __future__ import annotations

from redis.asyncio import Redis

from jobnode.api.appkeys import METRICS
from jobnode.dev.embedded import EmbeddedRedis
from tests.harness import make_settings, running_node
from tests.test_embedded import redis_binary  # noqa: F401  (fixture: the wheel's Redis 6.2 and the PATH's)
from tests.test_metrics import parse, value


async def test_a_full_redis_refuses_submits_with_503_and_takes_them_again_once_it_has_room(
        tmp_path, mongo_server, key_prefix, mongo_db_name, mongo_client, redis_binary):
    # The two refuse differently (Redis 7 before a script runs, 6.2 at its first write).
    with EmbeddedRedis(tmp_path / "redis", binary=redis_binary) as redis_server:
        settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name, WORKER_COUNT="0")
        admin = Redis.from_url(redis_server.url)
        async with running_node(settings) as client:
            await admin.config_set("maxmemory-policy", "noeviction")
            await admin.config_set("maxmemory", "1")  # below what it already uses: every write is refused

            refused = await client.post("/api/v1/jobs", json={"type": "echo"})
            body = await refused.json()
            assert refused.status == 503, body
            assert "full" in body["error"]["message"]
            listed = await (await client.get("/api/v1/jobs")).json()
            assert listed["jobs"] == []  # the MongoDB insert was taken back

            await admin.config_set("maxmemory", "0")
            accepted = await client.post("/api/v1/jobs", json={"type": "echo"})
            assert accepted.status == 201, await accepted.text()

            samples = parse(client.app[METRICS].exposition().decode())
            refusals = [v for (name, labels), v in samples.items()
                        if name == "jobnode_storage_errors_total" and ("kind", "refused") in labels]
            assert sum(refusals) >= 1
        await admin.aclose()
