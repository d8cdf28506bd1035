"""A MongoDB that stops answering: the submit that waited out the timeout opens the circuit, and the
next submissions are refused at once (503 overloaded, Retry-After) instead of each waiting too."""

from __future__ import annotations

import os
import signal

import pytest

from jobnode.dev.embedded import EmbeddedMongo
from tests.harness import make_settings, running_node
from tests.waiting import wait_until


@pytest.mark.timeout(90)
async def test_a_paused_store_opens_the_submit_circuit_and_it_closes_once_the_store_answers(
        tmp_path, redis_server, key_prefix, mongo_db_name):
    mongo = EmbeddedMongo(tmp_path / "mongodb").start()
    try:
        settings = make_settings(redis_server.url, mongo.url, key_prefix, mongo_db_name, WORKER_COUNT="0",
                                 MONGODB_TIMEOUT="1500ms")
        async with running_node(settings) as client:
            os.kill(mongo.pid, signal.SIGSTOP)
            try:
                timed_out = await client.post("/api/v1/jobs", json={"type": "echo"})
                assert timed_out.status == 503
                assert (await timed_out.json())["error"]["code"] == "unavailable"
                shed = await client.post("/api/v1/jobs", json={"type": "echo"})
                body = await shed.json()
                assert shed.status == 503 and body["error"]["code"] == "overloaded", body
                assert "timed out (mongodb unavailable)" in body["error"]["message"]
                assert int(shed.headers["Retry-After"]) >= 1
            finally:
                os.kill(mongo.pid, signal.SIGCONT)

            async def accepted() -> bool:
                return (await client.post("/api/v1/jobs", json={"type": "echo"})).status == 201

            await wait_until(accepted, timeout_s=30, interval_s=0.5, message="submits never accepted again")
    finally:
        mongo.stop()
