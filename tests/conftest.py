"""Shared fixtures: one real Redis and one real SecantusDB per test session.

Tests share the two servers but never each other's data: each test gets its
own Redis key prefix and its own MongoDB database. The shared servers must not
be stopped or killed by a test; a test about crashes or restarts starts its own
`EmbeddedRedis` / `EmbeddedMongo` in its `tmp_path`.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.dev.embedded import EmbeddedMongo, EmbeddedRedis
from jobnode.storage.redis.lease import LeaderLease
from jobnode.storage.redis.queue import JobQueue
from tests.timeout_report import describe_tasks, probe_servers

_TEST_LOOP: list[asyncio.AbstractEventLoop] = []


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A redis-server on a free port for the whole session (AOF on, as in production)."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedMongo]:
    """A SecantusDB on a free port for the whole session, with test-only commands enabled."""
    with EmbeddedMongo(tmp_path_factory.mktemp("mongodb"), test_commands=True) as server:
        yield server


def _test_slug(request: pytest.FixtureRequest, max_chars: int) -> str:
    # The test's name in the key/database name makes leftovers easy to trace.
    slug = re.sub(r"[^A-Za-z0-9]+", "_", request.node.name).strip("_")
    return slug[:max_chars]


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> str:
    """A Redis key prefix no other test uses (pass it as the node's redis_key_prefix)."""
    return f"t_{_test_slug(request, 40)}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def mongo_db_name(request: pytest.FixtureRequest) -> str:
    """A MongoDB database name no other test uses (at most 63 characters, as MongoDB requires).

    Tests never drop their database: SecantusDB's dropDatabase deletes row by row under its
    global lock and, late in a session, took minutes and stalled every other test's writes.
    The names never collide, and the server's storage goes away with the session.
    """
    return f"t_{_test_slug(request, 40)}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def redis_client(redis_server: EmbeddedRedis, key_prefix: str) -> AsyncIterator[aioredis.Redis]:
    """An asyncio Redis client (bytes replies); the test's keys are deleted afterwards."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=False)
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=f"{key_prefix}*", count=1000):
            await client.delete(key)
        await client.aclose()



@pytest.fixture
async def queue(redis_client: aioredis.Redis, key_prefix: str) -> JobQueue:
    """The test's job queue in Redis, under its own key prefix."""
    return JobQueue(redis_client, key_prefix)


@pytest.fixture
async def token(queue: JobQueue) -> int:
    """A fencing token: the test holds the leader lease as node `leader`, as the dispatcher must."""
    return await LeaderLease(queue.redis, queue.scripts, queue.prefix, "leader", ttl_s=60).acquire()

@pytest.fixture(scope="session")
async def mongo_client(mongo_server: EmbeddedMongo) -> AsyncIterator[AsyncMongoClient]:
    """One AsyncMongoClient for the session (a client per test would cost a connection pool each)."""
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.url, serverSelectionTimeoutMS=10_000)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def mongo_db(mongo_client: AsyncMongoClient, mongo_db_name: str) -> AsyncIterator[AsyncDatabase]:
    """The test's own database on the shared server (see `mongo_db_name` for why it is kept)."""
    yield mongo_client[mongo_db_name]


@pytest.fixture(scope="session", autouse=True)
async def _test_loop() -> AsyncIterator[None]:
    """Remembers the loop every test shares, for the task report of a test that times out."""
    _TEST_LOOP.append(asyncio.get_running_loop())
    yield
    _TEST_LOOP.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    timed_out = call.excinfo is not None and "from pytest-timeout" in str(call.excinfo.value)
    if report.when == "call" and timed_out and _TEST_LOOP:
        report.sections.append(("asyncio tasks at the timeout", describe_tasks(_TEST_LOOP[0])))
        servers = {name: item.funcargs[name] for name in ("redis_server", "mongo_server") if name in item.funcargs}
        report.sections.append(("shared servers at the timeout", probe_servers(servers)))
