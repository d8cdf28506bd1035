"""Request ids: accepted or generated, returned, bound in log lines, and carried with a job to its worker."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from jobnode.api.request_ids import REQUEST_ID_HEADER, accepted_request_id, request_id_middleware
from jobnode.observability.logs import configure_logging, get_logger
from tests.harness import make_settings, running_node
from tests.waiting import wait_until

GENERATED = re.compile(r"[0-9a-f]{32}")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


@pytest.fixture
async def logged_node(redis_server, mongo_server, key_prefix, mongo_db_name, mongo_client):
    settings = make_settings(redis_server.url, mongo_server.url, key_prefix, mongo_db_name,
                             LOG_FORMAT="json", LOG_LEVEL="debug", NODE_ID="node-r")
    stream = io.StringIO()
    configure_logging(settings, stream)
    async with running_node(settings) as client:
        yield client, stream


async def completed(client: TestClient, job_id: str) -> dict[str, Any]:
    async def check():
        job = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return job if job["status"] == "completed" else None

    return await wait_until(check, timeout_s=20, message=f"job {job_id} never completed")


async def test_the_callers_request_id_follows_the_job_into_the_workers_log_lines(logged_node):
    client, stream = logged_node
    resp = await client.post("/api/v1/jobs", json={"type": "echo"}, headers={REQUEST_ID_HEADER: "trace-42.a"})
    job = await resp.json()
    assert resp.headers[REQUEST_ID_HEADER] == "trace-42.a"
    assert job["request_id"] == "trace-42.a"
    await completed(client, job["id"])

    def worker_lines():
        found = [r for r in lines(stream) if r["event"] in ("job.started", "job.completed")]
        return found if len(found) == 2 else None

    for record in await wait_until(worker_lines, timeout_s=10, message="the worker logged no job lines"):
        assert (record["request_id"], record["job_id"], record["node_id"]) == ("trace-42.a", job["id"], "node-r")
        assert record["worker"].startswith("node-r/") and record["job_type"] == "echo"
    submitted = [r for r in lines(stream) if r["event"] == "job.submitted"]
    assert [(r["request_id"], r["job_id"]) for r in submitted] == [("trace-42.a", job["id"])]


async def test_a_request_without_a_usable_id_gets_a_generated_one(logged_node):
    client, _ = logged_node
    plain = await client.post("/api/v1/jobs", json={"type": "echo"})
    assert GENERATED.fullmatch(plain.headers[REQUEST_ID_HEADER])
    assert (await plain.json())["request_id"] == plain.headers[REQUEST_ID_HEADER]
    for unusable in ("x" * 129, "has space", "line\tbreak", "<script>", "-starts-with-dash"):
        resp = await client.get("/api/v1/election", headers={REQUEST_ID_HEADER: unusable})
        assert GENERATED.fullmatch(resp.headers[REQUEST_ID_HEADER]), unusable
    batch = await client.post("/api/v1/jobs/batch", json={"jobs": [{"type": "echo"}, {"type": "echo"}]},
                              headers={REQUEST_ID_HEADER: "batch-7"})
    assert {job["request_id"] for job in (await batch.json())["jobs"]} == {"batch-7"}


async def test_error_responses_carry_the_request_id_too(logged_node):
    client, _ = logged_node
    for resp in (await client.get("/api/v1/jobs/" + "0" * 32, headers={REQUEST_ID_HEADER: "r-404"}),
                 await client.get("/nowhere", headers={REQUEST_ID_HEADER: "r-404"}),
                 await client.post("/api/v1/jobs", data="not json", headers={REQUEST_ID_HEADER: "r-404"})):
        assert resp.status >= 400 and resp.headers[REQUEST_ID_HEADER] == "r-404"


async def test_bound_values_never_leak_into_the_next_request_on_one_connection() -> None:
    stream = io.StringIO()
    configure_logging(make_settings("redis://x", "mongodb://x", "p", "d", LOG_FORMAT="json", LOG_LEVEL="info",
                                    NODE_ID="n1"), stream)
    log = get_logger("test")

    async def handler(request: web.Request) -> web.Response:
        log.info("handled")
        return web.Response(text="ok")

    app = web.Application(middlewares=[request_id_middleware])
    app.router.add_get("/jobs/{job_id}", handler)
    app.router.add_get("/plain", handler)
    async with TestClient(TestServer(app)) as client:  # one session: one keep-alive connection
        await client.get("/jobs/abc", headers={REQUEST_ID_HEADER: "first"})
        await client.get("/plain")
    first, second = [r for r in lines(stream) if r["event"] == "handled"]
    assert (first["request_id"], first["job_id"]) == ("first", "abc")
    assert "job_id" not in second and GENERATED.fullmatch(second["request_id"])
    assert second["node_id"] == "n1"


def test_accepted_request_ids() -> None:
    assert accepted_request_id("0f1e-2d3c_4b5a.6978:req/1@svc+x=y") == "0f1e-2d3c_4b5a.6978:req/1@svc+x=y"
    assert accepted_request_id("a" * 128) == "a" * 128
    for bad in (None, "", "a" * 129, "é", "a\nb", "a b", '"quoted"', "{json}"):
        assert accepted_request_id(bad) is None, bad
