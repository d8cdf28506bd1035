"""The event stream on running nodes: job events from submission to their end, resume with
Last-Event-ID, gaps, filters, several nodes on one cluster, progress and logs, roles."""

from __future__ import annotations

import asyncio

import pytest

from jobnode.processors.catalog import build_registry
from jobnode.processors.registry import ProcessorRegistry
from tests.auth_fixtures import auth_env, bearer, token_for
from tests.events_reading import read_events
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until

JOB_EVENTS_OF_A_SUCCESS = ["job.submitted", "job.started", "job.completed"]


async def submit(client, job_type="sleep", payload=None, headers=None) -> str:
    resp = await client.post("/api/v1/jobs", json={"type": job_type, "payload": payload or {}}, headers=headers)
    assert resp.status == 201, await resp.text()
    return (await resp.json())["id"]


async def stream_ids(redis_client, prefix: str, after: str) -> list[str]:
    entries = await redis_client.xrange(f"{prefix}:events", f"({after}", "+")
    return [entry_id.decode() for entry_id, _ in entries]


async def test_a_jobs_event_stream_runs_from_submission_to_its_terminal_event_and_ends(start_node):
    client = await start_node()
    job_id = await submit(client, payload={"seconds": 0})
    resp = await client.get(f"/api/v1/jobs/{job_id}/events")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = await read_events(resp)  # the server ends the stream after the terminal event
    assert [e["event"] for e in events] == JOB_EVENTS_OF_A_SUCCESS
    assert all(e["data"]["job"] == job_id and e["data"]["type"] == "sleep" for e in events)
    assert events[1]["data"]["attempt"] == 1 and events[1]["data"]["node"] == "node-1"
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))

    # Finished: only its terminal event, made from the record, at once.
    again = await read_events(await client.get(f"/api/v1/jobs/{job_id}/events"))
    assert [(e["event"], e["id"]) for e in again] == [("job.completed", None)]


async def test_a_failing_job_ends_with_job_dead_after_each_failed_attempt(start_node):
    client = await start_node()
    resp = await client.post("/api/v1/jobs", json={"type": "sleep", "max_retries": 1,
                                                   "payload": {"seconds": 0, "fail": True}})
    job_id = (await resp.json())["id"]
    events = await read_events(await client.get(f"/api/v1/jobs/{job_id}/events"))
    assert [e["event"] for e in events] == [
        "job.submitted", "job.started", "job.failed", "job.retrying", "job.started", "job.failed", "job.dead"]
    assert "failed as asked" in events[-1]["data"]["error"]


async def test_a_subscriber_resumes_after_a_dropped_connection_without_losing_an_event(
        start_node, redis_client, key_prefix):
    client = await start_node()
    first = await client.get("/api/v1/events", params={"event": "job."})
    for _ in range(3):
        await submit(client, payload={"seconds": 0})
    seen = await read_events(first, count=4)
    first.close()  # the connection drops mid-stream
    last_id = seen[-1]["id"]
    for _ in range(3):  # events the subscriber is away for
        await submit(client, payload={"seconds": 0})
    await wait_until(lambda: client.get("/api/v1/stats"), timeout_s=1, message="node answers")
    expected_total = 6 * len(JOB_EVENTS_OF_A_SUCCESS)
    await wait_until(lambda: _count_events(redis_client, key_prefix, expected_total), timeout_s=15,
                     message="every job finished")
    missed = await stream_ids(redis_client, key_prefix, last_id)
    job_ids_missed = [i for i in missed]
    resumed = await client.get("/api/v1/events", params={"event": "job."}, headers={"Last-Event-ID": last_id})
    replayed = await read_events(resumed, count=len(job_ids_missed))
    assert [e["id"] for e in replayed] == job_ids_missed
    assert len(seen) + len(replayed) == expected_total


async def _count_events(redis_client, prefix, at_least: int) -> bool:
    entries = await redis_client.xrange(f"{prefix}:events", "-", "+")
    return sum(1 for _, fields in entries if fields[b"event"].startswith(b"job.")) >= at_least


async def test_a_subscriber_beyond_the_retention_is_told_of_the_gap_then_carries_on(
        start_node, redis_client, key_prefix):
    client = await start_node()
    first = await submit(client, payload={"seconds": 0})
    await read_events(await client.get(f"/api/v1/jobs/{first}/events"))
    old_id = (await redis_client.xrange(f"{key_prefix}:events", "-", "+", count=1))[0][0].decode()
    await redis_client.xtrim(f"{key_prefix}:events", maxlen=0, approximate=False)  # what the retention does, at once
    second = await submit(client, payload={"seconds": 0})
    resp = await client.get("/api/v1/events", params={"job": second}, headers={"Last-Event-ID": old_id})
    events = await read_events(resp, until="job.completed")
    assert events[0]["event"] == "stream.gap" and events[0]["id"] is None
    assert events[0]["data"]["reason"] == "retention" and events[0]["data"]["last_event_id"] == old_id
    assert [e["event"] for e in events[1:]] == JOB_EVENTS_OF_A_SUCCESS


async def test_filters_are_prefixes_and_bad_input_is_a_400(start_node):
    client = await start_node()
    resp = await client.get("/api/v1/events", params={"type": "ec", "event": "job.completed,job.dead"})
    await submit(client, payload={"seconds": 0})
    echo = await submit(client, "echo", {"x": 1})
    events = await read_events(resp, count=1)
    assert [(e["event"], e["data"]["job"]) for e in events] == [("job.completed", echo)]

    bad = await client.get("/api/v1/events", headers={"Last-Event-ID": "yesterday"})
    assert bad.status == 400
    assert (await bad.json())["error"]["details"]["field"] == "Last-Event-ID"
    missing = await client.get(f"/api/v1/jobs/{'0' * 32}/events")
    assert missing.status == 404


async def test_a_subscriber_on_one_node_sees_jobs_submitted_on_another(start_node):
    node1 = await start_node(NODE_ID="node-1")
    node2 = await start_node(NODE_ID="node-2", WORKER_COUNT="0")
    resp = await node2.get("/api/v1/events", params={"event": "job."})
    job_id = await submit(node1, payload={"seconds": 0})
    events = await read_events(resp, until="job.completed")
    assert [e["event"] for e in events] == JOB_EVENTS_OF_A_SUCCESS
    assert {e["data"]["job"] for e in events} == {job_id}


async def test_node_and_leader_events(start_node):
    watcher = await start_node(NODE_ID="node-1", WORKER_COUNT="0")
    resp = await watcher.get("/api/v1/events", params={"event": "node."})
    await start_node(NODE_ID="node-2")
    events = await read_events(resp, count=1)
    assert events[0]["event"] == "node.joined" and events[0]["data"]["node"] == "node-2"


class Reporting:
    """Reports progress and logs, then waits for the test to let it finish."""

    type = "reporting"

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def process(self, job):
        await job.progress(0.25, "a quarter")
        await job.progress(0.5, "half way")  # within the interval: this one wins
        for i in range(120):
            job.log(f"line {i}")
        job.log("x" * 5000)
        await self.release.wait()
        return {"ok": True}


async def test_progress_and_logs_of_a_running_job(start_node):
    reporting = Reporting()
    registry = build_registry_with(reporting)
    client = await start_node(processors=registry, JOB_PROGRESS_INTERVAL="200ms")
    job_id = await submit(client, "reporting")
    stream = await client.get(f"/api/v1/jobs/{job_id}/events")

    async def progress_shown():
        job = await (await client.get(f"/api/v1/jobs/{job_id}")).json()
        return job["progress"] if job["progress"] and job["progress"]["fraction"] == 0.5 else None

    shown = await wait_until(progress_shown, timeout_s=10, message="the job shows its progress")
    assert shown["message"] == "half way"
    logs = await wait_until(lambda: _logs_of(client, job_id), timeout_s=10, message="log lines arrive")
    assert logs["count"] == 100  # the last 100 of 121 lines
    assert logs["lines"][0]["message"] == "line 21" and logs["lines"][0]["attempt"] == 1
    assert len(logs["lines"][-1]["message"].encode()) <= 1000 and logs["lines"][-1]["message"].endswith("[cut]")
    reporting.release.set()
    events = await read_events(stream)
    progress = [e["data"] for e in events if e["event"] == "job.progress"]
    assert progress and progress[-1]["fraction"] == 0.5 and progress[-1]["message"] == "half way"
    assert all(p["fraction"] in (0.25, 0.5) for p in progress)
    assert events[-1]["event"] == "job.completed"


async def _logs_of(client, job_id):
    body = await (await client.get(f"/api/v1/jobs/{job_id}/logs")).json()
    return body if body["count"] == 100 and body["lines"][-1]["message"].startswith("xxx") else None


def build_registry_with(*processors) -> ProcessorRegistry:
    from jobnode.core.settings import Settings

    registry = build_registry(Settings.from_env({"METRICS_ENABLED": "false"}, env_file=None))
    for processor in processors:
        registry.add(processor)
    return registry


async def test_each_role_sees_what_it_may(start_node):
    client = await start_node(**auth_env())
    alice, bob, robot, admin = (bearer(token_for("user", "alice")), bearer(token_for("user", "bob")),
                                bearer(token_for("worker", "robot")), bearer(token_for("admin", "ops")))
    streams = {name: await client.get("/api/v1/events", params={"event": "job.,node."}, headers=h)
               for name, h in {"alice": alice, "bob": bob, "robot": robot, "admin": admin}.items()}
    assert all(resp.status == 200 for resp in streams.values())
    alices = await submit(client, "echo", {}, headers=alice)
    bobs = await submit(client, "echo", {}, headers=bob)
    await read_events(await client.get(f"/api/v1/jobs/{bobs}/events", headers=bob))
    # Bob's job is over; so is Alice's (submitted first, same worker order is not assumed: wait).
    await read_events(await client.get(f"/api/v1/jobs/{alices}/events", headers=alice))
    marker = await submit(client, "echo", {}, headers=bob)  # the last event everyone may wait for
    assert (await client.get(f"/api/v1/jobs/{bobs}/events", headers=alice)).status == 404
    admin_seen = await read_events(streams["admin"], count=9)
    assert {e["data"]["job"] for e in admin_seen} == {alices, bobs, marker}
    alice_seen = await read_events(streams["alice"], count=3)
    assert {e["data"]["job"] for e in alice_seen} == {alices}
    bob_seen = await read_events(streams["bob"], count=6)
    assert {e["data"]["job"] for e in bob_seen} == {bobs, marker}
    robot_stream = streams["robot"]
    await start_node(NODE_ID="node-9", **auth_env())  # a cluster event the worker may see
    robot_seen = await read_events(robot_stream, count=1)
    assert robot_seen[0]["event"] == "node.joined"


async def test_a_stream_token_opens_event_streams_and_nothing_else(start_node):
    client = await start_node(**auth_env())
    alice = bearer(token_for("user", "alice"))
    minted = await client.post("/api/v1/events/token", headers=alice)
    assert minted.status == 200 and minted.headers["Cache-Control"] == "no-store"
    token = (await minted.json())["token"]
    assert (await minted.json())["expires_in"] == 60
    opened = await client.get("/api/v1/events", params={"access_token": token})
    assert opened.status == 200
    opened.close()
    job_id = await submit(client, "echo", {}, headers=alice)
    via_token = await client.get(f"/api/v1/jobs/{job_id}/events", params={"access_token": token})
    assert via_token.status == 200
    assert (await read_events(via_token))[-1]["event"] == "job.completed"
    # Not a bearer token for anything else, and a login token is no stream token.
    assert (await client.get(f"/api/v1/jobs/{job_id}", headers=bearer(token))).status == 401
    assert (await client.get(f"/api/v1/jobs/{job_id}", params={"access_token": token})).status == 401
    login_token = token_for("user", "alice")
    assert (await client.get("/api/v1/events", params={"access_token": login_token})).status == 401
    assert (await client.get("/api/v1/events", params={"access_token": "nonsense"})).status == 401


async def test_a_slow_subscriber_is_cut_off_with_a_gap_and_does_not_stall_the_others(
        start_node, redis_client, key_prefix):
    count_of_events = 300
    client = await start_node(WORKER_COUNT="0", EVENTS_SUBSCRIBER_BUFFER="8")
    host, port = client.server.host, client.server.port
    reader, writer = await _raw_subscriber(host, port)  # reads its headers, then nothing
    fast = await client.get("/api/v1/events", params={"event": "node.joined"})  # not the node's own leader.changed
    reading = asyncio.create_task(read_events(fast, count=count_of_events, timeout_s=60))
    # Events bigger than every buffer between the node and the stalled reader, which in all
    # hold well under count_of_events of them.
    blob = "x" * 20_000
    for i in range(count_of_events):
        await redis_client.xadd(f"{key_prefix}:events", {"event": "node.joined", "node": f"n{i}", "note": blob})
    got = await reading
    count = count_of_events
    assert [e["data"]["node"] for e in got] == [f"n{i}" for i in range(count)]
    # The stalled one overflowed; once it reads again it finds stream.gap and the end.
    try:
        rest = await asyncio.wait_for(reader.read(), timeout=30)
    finally:
        writer.close()
    assert b"event: stream.gap" in rest and b'"reason":"slow_subscriber"' in rest
    assert rest.rstrip().endswith(b"0")  # the last chunk: the node ended the response


async def _raw_subscriber(host: str, port: int):
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**26)
    writer.write(f"GET /api/v1/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    transport = writer.transport
    transport.pause_reading()
    return _Resuming(reader, transport), writer


class _Resuming:
    def __init__(self, reader, transport) -> None:
        self._reader, self._transport = reader, transport

    async def read(self) -> bytes:
        self._transport.resume_reading()
        return await self._reader.read()
