"""Starting real jobnode nodes in-process for tests, against the session's Redis and SecantusDB."""

from __future__ import annotations

import re

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from jobnode.core.settings import Settings
from jobnode.node import build_app
from jobnode.processors.catalog import build_registry
from jobnode.processors.registry import ProcessorRegistry

# Fast clocks so retries, leases and reaping happen within a test's patience.
TEST_ENV = {
    "NODE_ID": "node-1",
    "WORKER_COUNT": "2",
    "METRICS_ENABLED": "false",
    "LOG_FORMAT": "console",
    "LOG_LEVEL": "warning",
    "RETRY_BASE_DELAY": "50ms",
    "RETRY_MAX_DELAY": "200ms",
    "JOB_LEASE_TTL": "3s",
    "WORKER_HEARTBEAT_INTERVAL": "200ms",
    "WORKER_TTL": "1s",
    "RECONCILE_INTERVAL": "1h",
    "SHUTDOWN_GRACE": "2s",
    "MONGODB_TIMEOUT": "5s",
}


def make_settings(redis_url: str, mongo_url: str, prefix: str, db_name: str, **env: str) -> Settings:
    values = {
        **TEST_ENV,
        "REDIS_ADDR": redis_url,
        "MONGODB_URI": mongo_url,
        "MONGODB_DATABASE": db_name,
        "REDIS_KEY_PREFIX": prefix,
        "DATA_DIR": f"/tmp/jobnode-test-{prefix}",
        **env,
    }
    return Settings.from_env(values, env_file=None)


@asynccontextmanager
async def running_node(settings: Settings, processors: ProcessorRegistry | None = None) -> AsyncIterator[TestClient]:
    app = build_app(settings, processors)
    client = TestClient(TestServer(app))
    # Not `async with`: a start that fails part way (a later cleanup_ctx raising) would skip
    # the close, and the contexts that did start would leave their Redis and MongoDB clients
    # running in the loop all tests share.
    try:
        await client.start_server()
        yield client
    finally:
        await client.close()


NodeFactory = Callable[..., Any]


@pytest.fixture
async def start_node(redis_server, mongo_server, key_prefix, mongo_db_name, mongo_client) -> AsyncIterator[NodeFactory]:
    """`await start_node(WORKER_COUNT="1", processors=registry)` -> a test client of a running node."""
    async with AsyncExitStack() as stack:

        async def start(processors: ProcessorRegistry | None = None, **env: str) -> TestClient:
            settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name, **env)
            client = await stack.enter_async_context(running_node(settings, processors))
            client.settings = settings  # type: ignore[attr-defined]
            return client

        yield start


def registry_with(**processors: Any) -> ProcessorRegistry:
    """The built-in processors plus test ones given as `type=async fn(job)`."""
    registry = build_registry(Settings.from_env({}, env_file=None))
    for name, fn in processors.items():
        registry.register(name, fn)
    return registry


NODE_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[")


def without_node_logs(output: str) -> str:
    """A CLI command's own output: an in-process node logs to the same captured stdout."""
    return "".join(line for line in output.splitlines(keepends=True) if not NODE_LOG_LINE.match(line))
