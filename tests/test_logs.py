"""Logging: JSON shape, levels, node_id everywhere, stdlib routed through structlog, secrets scrubbed."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
import structlog
from pymongo import AsyncMongoClient

from jobnode.core.settings import Settings
from jobnode.observability.logs import configure_logging, get_logger

JWT = "Qm7f2Lx9Zr4mW8vK1nB6tY0hJ5dG3cPa"
REDIS_PW = "r3dis-pw-9911"
MONGO_PW = "m0ngo-pw-7722"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def configure(**env: str) -> io.StringIO:
    base = {"NODE_ID": "node-a", "JWT_SECRET": JWT, "REDIS_PASSWORD": REDIS_PW,
            "MONGODB_URI": f"mongodb://app:{MONGO_PW}@db:27017/jobs"}
    stream = io.StringIO()
    configure_logging(Settings.from_env(base | env, env_file=None), stream)
    return stream


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_have_the_expected_shape() -> None:
    stream = configure()
    get_logger("jobnode.test").info("job started", job_id="j1", attempt=2)
    get_logger("jobnode.test").warning("slow", elapsed_s=1.5)
    first, second = records(stream)
    assert first["event"] == "job started"
    assert (first["level"], first["logger"], first["node_id"]) == ("info", "jobnode.test", "node-a")
    assert (first["job_id"], first["attempt"]) == ("j1", 2)
    stamp = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00"))
    assert first["timestamp"].endswith("Z") and stamp.utcoffset() == timezone.utc.utcoffset(None)
    assert (second["level"], second["elapsed_s"]) == ("warning", 1.5)


def test_level_comes_from_settings() -> None:
    stream = configure(LOG_LEVEL="warning")
    log = get_logger("jobnode.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    logging.getLogger("aiohttp.server").info("stdlib info")
    assert [r["event"] for r in records(stream)] == ["w", "e"]

    stream = configure(LOG_LEVEL="debug")
    get_logger("jobnode.test").debug("d")
    assert [r["event"] for r in records(stream)] == ["d"]


def test_stdlib_logging_goes_through_the_same_renderer() -> None:
    stream = configure()
    logging.getLogger("aiohttp.access").info('%s "GET %s" %d', "127.0.0.1", "/health", 200)
    (record,) = records(stream)
    assert record["event"] == '127.0.0.1 "GET /health" 200'
    assert (record["logger"], record["level"], record["node_id"]) == ("aiohttp.access", "info", "node-a")
    assert record["timestamp"].endswith("Z")


def test_node_id_reaches_tasks_and_threads() -> None:
    stream = configure()

    async def in_task() -> None:
        await asyncio.gather(asyncio.create_task(asyncio.sleep(0)))
        get_logger("task").info("from a task")

    asyncio.run(in_task())
    worker = threading.Thread(target=lambda: logging.getLogger("thread").warning("from a thread"))
    worker.start()
    worker.join()
    assert [(r["event"], r["node_id"]) for r in records(stream)] == [
        ("from a task", "node-a"),
        ("from a thread", "node-a"),
    ]


def test_reconfiguring_replaces_the_handler() -> None:
    first = configure()
    second = configure(NODE_ID="node-b")
    get_logger("x").info("once")
    assert first.getvalue() == ""
    assert [(r["event"], r["node_id"]) for r in records(second)] == [("once", "node-b")]


def test_bound_values_and_exceptions_are_rendered() -> None:
    stream = configure()
    log = get_logger("jobnode.pipeline.workers", worker_id="w-3")
    try:
        raise RuntimeError("processor blew up")
    except RuntimeError:
        log.exception("job failed", job_id="j9")
    (record,) = records(stream)
    assert (record["worker_id"], record["job_id"], record["level"]) == ("w-3", "j9", "error")
    assert "RuntimeError: processor blew up" in record["exception"]


@pytest.mark.parametrize(
    "key",
    ["password", "db_password", "ADMIN_PASSWORD", "passwd", "pwd", "token", "access_token", "X-Auth-Token",
     "secret", "client_secret", "jwt_secret", "Authorization", "api_key", "apiKey", "cookie", "credentials"],
)
def test_values_under_sensitive_key_names_are_redacted(key: str) -> None:
    stream = configure()
    get_logger("x").info("login", **{key: "some-opaque-value-123"})
    (record,) = records(stream)
    assert record[key] == "***"
    assert "some-opaque-value-123" not in stream.getvalue()


@pytest.mark.parametrize("secret", [JWT, REDIS_PW, MONGO_PW])
def test_configured_secrets_are_redacted_under_any_key(secret: str) -> None:
    stream = configure()
    log = get_logger("x")
    log.info("value", detail=secret)
    log.info("inside text", detail=f"connecting with {secret} now")
    log.info("nested", request={"headers": [{"x": secret}], "body": secret.encode()})
    log.info("positional %s", secret)
    log.info(f"in the event {secret}")
    logging.getLogger("aiohttp.client").warning("stdlib %s", secret)
    try:
        raise ValueError(f"bad credentials {secret}")
    except ValueError:
        log.exception("failed")
    output = stream.getvalue()
    assert len(records(stream)) == 7
    assert secret not in output
    assert output.count("***") >= 7


def test_url_passwords_are_masked() -> None:
    stream = configure()
    get_logger("x").info("connect", target="redis://:other-pw-55@cache:6379/0")
    (record,) = records(stream)
    assert record["target"] == "redis://:***@cache:6379/0"


def test_counts_under_token_like_keys_are_kept() -> None:
    stream = configure()
    get_logger("ratelimit").info("bucket", tokens_left=5, token_rate=1.5, has_token=True, token=None)
    (record,) = records(stream)
    assert (record["tokens_left"], record["token_rate"], record["has_token"], record["token"]) == (5, 1.5, True, None)


def test_short_secrets_are_masked_only_as_whole_values() -> None:
    stream = configure(REDIS_PASSWORD="pw")
    get_logger("x").info("pwd rotation", value="pw", text="pwned")
    (record,) = records(stream)
    assert (record["event"], record["value"], record["text"]) == ("pwd rotation", "***", "pwned")


def test_console_format_is_readable_and_redacted() -> None:
    stream = configure(LOG_FORMAT="console")
    get_logger("jobnode.node").info("node started", password="hunter22", url="http://n1:8080")
    logging.getLogger("aiohttp.access").info("GET /health %s", JWT)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
    assert "node started" in lines[0] and "node_id=node-a" in lines[0] and "[jobnode.node]" in lines[0]
    assert "password=***" in lines[0] and "hunter22" not in lines[0]
    assert "GET /health ***" in lines[1] and JWT not in lines[1]


async def test_debug_logging_never_writes_the_mongodb_driver_s_command_documents(mongo_server, mongo_db_name) -> None:
    stream = configure(LOG_LEVEL="debug")
    client: AsyncMongoClient = AsyncMongoClient(mongo_server.url, serverSelectionTimeoutMS=10_000)
    try:
        payload = {"headers": {"Authorization": "Bearer payload-token-5150"}, "password": "$scrypt$hash-6160"}
        await client[mongo_db_name].jobs.insert_one(payload)
    finally:
        await client.close()
    written = stream.getvalue()
    assert "payload-token-5150" not in written and "hash-6160" not in written
    assert logging.getLogger("jobnode").isEnabledFor(logging.DEBUG)  # our own debug lines stay on
