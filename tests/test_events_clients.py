"""The Python client and the CLI on the event stream: reconnecting without loss, waits that
follow a job's events (and poll a node without them), `jobs watch`, `jobs logs`, `events`."""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from jobnode.cli.events import run_events
from jobnode.client import AsyncClient
from jobnode.node import NODE_SERVICES
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.test_cli_node import isolated_client_env, node_url, run  # noqa: F401  (fixtures)
from tests.waiting import wait_until


async def test_events_reconnect_with_the_last_id_and_lose_nothing(start_node):
    node = await start_node()
    url = str(node.make_url("")).rstrip("/")
    services = node.app[NODE_SERVICES]
    async with AsyncClient(url) as client:
        got: list[dict] = []

        async def follow() -> None:
            async for event in client.events(event="job.completed"):
                got.append(event)

        following = asyncio.create_task(follow())
        await wait_until(lambda: services.events.hub.subscribers == 1, timeout_s=10, message="subscribed")
        first = await client.submit("sleep", {"seconds": 0})
        await wait_until(lambda: len(got) == 1, timeout_s=10, message="the first completion arrives")
        services.events.hub.close_all()  # every stream on the node ends: the client is cut off
        await wait_until(lambda: services.events.hub.subscribers == 0, timeout_s=10, message="cut off")
        during = [(await client.submit("sleep", {"seconds": 0}))["id"] for _ in range(3)]
        await wait_until(lambda: len(got) == 4, timeout_s=15, message="the missed completions are replayed")
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
    assert [e["data"]["job"] for e in got] == [first["id"], *during]


async def test_wait_follows_the_jobs_events(start_node):
    node = await start_node()
    async with AsyncClient(str(node.make_url("")).rstrip("/")) as client:
        job = await client.submit("sleep", {"seconds": 1})
        seen: list[str] = []
        done = await client.wait(job["id"], timeout_s=30, on_event=lambda e: seen.append(e["event"]))
        assert done["status"] == "completed" and done["progress"]["fraction"] > 0
        assert seen[0] == "job.submitted" and seen[-1] == "job.completed" and "job.progress" in seen
        batch = [(await client.submit("sleep", {"seconds": 0}))["id"] for _ in range(5)]
        progress: list[int] = []
        finished = await client.wait_many(batch, timeout_s=30, on_progress=lambda done, _: progress.append(done))
        assert [j["id"] for j in finished] == batch and {j["status"] for j in finished} == {"completed"}
        assert progress[-1] == 5


async def test_wait_polls_a_node_without_event_streams():
    job = {"id": "a" * 32, "status": "running"}
    polls = []

    async def get_job(request: web.Request) -> web.Response:
        polls.append(1)
        job["status"] = "completed" if len(polls) >= 3 else "running"
        return web.json_response(job)

    app = web.Application()
    app.router.add_get("/api/v1/jobs/{job_id}", get_job)  # an older node: no /events routes
    server = TestServer(app)
    await server.start_server()
    try:
        async with AsyncClient(str(server.make_url("")).rstrip("/")) as client:
            done = await client.wait(job["id"], timeout_s=10, poll_interval_s=0.01)
            assert done["status"] == "completed" and len(polls) == 3
            assert [j["status"] for j in await client.wait_many([job["id"]], timeout_s=10)] == ["completed"]
    finally:
        await server.close()


async def test_cli_watch_logs_and_events(node_url, capsys):
    code, out, _ = await run(capsys, "submit", "sleep", "--url", node_url, "--payload", '{"seconds": 1}', "--json")
    job_id = json.loads(out)["id"]
    code, out, err = await run(capsys, "jobs", "watch", job_id, "--url", node_url)
    assert code == 0 and json.loads(out)["status"] == "completed"
    lines = err.splitlines()
    assert " job.started " in lines[1] and " job.completed " in lines[-1]
    assert any(" job.progress " in line and "fraction=0.1" in line for line in lines)  # the first is sent at once
    code, out, _ = await run(capsys, "jobs", "logs", job_id, "--url", node_url, "--json")
    assert code == 0 and json.loads(out) == {"id": job_id, "lines": [], "count": 0}


async def test_cli_events_prints_one_json_line_per_event(start_node, capsys):
    node = await start_node()
    async with AsyncClient(str(node.make_url("")).rstrip("/")) as client:
        args = argparse.Namespace(type="sl", queue=None, job=None, event="job.", last_event_id=None, json=True)
        tail = asyncio.create_task(run_events(client, args))
        await wait_until(lambda: node.app[NODE_SERVICES].events.hub.subscribers == 1, timeout_s=10,
                         message="subscribed")
        job = await client.submit("sleep", {"seconds": 0})
        printed: list[str] = []

        def lines() -> int:
            # Only the command's lines: the in-process node logs to the same stdout.
            printed.extend(line for line in capsys.readouterr().out.splitlines() if line.startswith('{"id"'))
            return len(printed) >= 3

        await wait_until(lines, timeout_s=10, message="three events printed")
        tail.cancel()
        await asyncio.gather(tail, return_exceptions=True)
    events = [json.loads(line) for line in printed]
    assert [e["event"] for e in events] == ["job.submitted", "job.started", "job.completed"]
    assert {e["data"]["job"] for e in events} == {job["id"]}


async def test_a_node_without_subscribers_reads_no_events(start_node):
    node = await start_node()
    hub = node.app[NODE_SERVICES].events.hub
    async with AsyncClient(str(node.make_url("")).rstrip("/")) as client:
        first = await client.submit("sleep", {"seconds": 0})

        async def finished() -> bool:
            return (await client.get(first["id"]))["status"] == "completed"

        await wait_until(finished, timeout_s=30, message="the job finished")
        assert not hub.reading  # no one asked, so the node decoded nothing
        done = await client.wait((await client.submit("sleep", {"seconds": 0}))["id"], timeout_s=30)
        assert done["status"] == "completed"  # wait subscribed: the reader ran for it
        await wait_until(lambda: not hub.reading, timeout_s=15, message="the reader stops once alone")
