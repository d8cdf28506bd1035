"""While Redis is down, public answers say "redis unavailable"; the driver's text (hosts, ports) goes to the log."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from jobnode.api.appkeys import AUTHENTICATOR
from jobnode.auth.passwords import PasswordHasher
from jobnode.auth.throttle import LoginThrottle
from jobnode.core.errors import Unavailable
from jobnode.dev.embedded import free_port
from jobnode.storage.redis.boundary import redis_boundary
from tests.auth_fixtures import auth_env
from tests.harness import start_node  # noqa: F401  (fixture)


@pytest.fixture
async def dead_redis():
    port = free_port()
    client = Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    yield client, port
    await client.aclose()


async def test_an_unreachable_redis_is_reported_without_its_address(dead_redis, key_prefix):
    client, port = dead_redis

    @redis_boundary
    async def ping() -> bool:
        return await client.ping()

    with pytest.raises(Unavailable) as through_boundary:
        await ping()
    with pytest.raises(Unavailable) as at_login:
        await LoginThrottle(client, key_prefix).check("alice", "10.0.0.1")
    for caught in (through_boundary, at_login):
        assert caught.value.message.startswith("redis unavailable")
        assert str(port) not in caught.value.message and "127.0.0.1" not in caught.value.message


async def test_the_decoy_hash_exists_once_the_node_has_started(start_node):
    client = await start_node(WORKER_COUNT="0", **auth_env())
    assert client.app[AUTHENTICATOR].hasher._decoy is not None


async def test_a_hasher_prepares_its_decoy_up_front():
    hasher = PasswordHasher()
    await hasher.prepare()
    decoy = hasher._decoy
    assert decoy is not None
    assert await hasher.verify("anything", None) is False and hasher._decoy == decoy
