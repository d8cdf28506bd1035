"""End-to-end cluster tests: real node processes on loopback, killed and partitioned.

Each test starts its own cluster (tests/cluster_harness.py) with the timers shipped in
configs/. Jobs that must not run twice at once are `http` jobs calling a recorder in this
process: it sees every run of every job begin and end (a run on a killed node ends when
the kernel closes its connection), so "no job ran on two workers at overlapping times" is
checked from the outside, not taken on the nodes' word.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from jobnode.client import AsyncClient, ClientError
from jobnode.core.errors import NotLeader
from jobnode.storage.redis.queue import JobQueue
from tests.cluster_harness import Cluster, start_cluster  # noqa: F401  (the fixture)
from tools.chaos.tcp_proxy import FROM_TARGET, TcpProxy, http_header_identity
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ALGORITHMS = ("bully", "raft", "gossip")
JOB_HOLD_MS = 500
SUBMIT_INTERVAL_S = 0.05
COMPLETION_TIMEOUT_S = 45.0


# -- the run recorder -----------------------------------------------------------------

@dataclass
class Run:
    """One execution of a job, as the endpoint it calls saw it (loop clock, seconds)."""

    start: float
    end: float | None = None
    finished: bool = False  # held for the whole time and answered (not cut off by a kill)


class RunRecorder:
    """The endpoint `http` jobs call: records when each job's runs begin and end."""

    def __init__(self) -> None:
        self.runs: dict[str, list[Run]] = defaultdict(list)
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> RunRecorder:
        app = web.Application()
        app.router.add_get("/run/{tag}", self._run)
        # Cancel the handler when the caller disconnects: a killed node's run ends right then.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def payload(self, tag: str, hold_ms: int = JOB_HOLD_MS) -> dict[str, Any]:
        return {"url": f"http://127.0.0.1:{self.port}/run/{tag}?hold_ms={hold_ms}", "timeout_seconds": 30}

    async def _run(self, request: web.Request) -> web.Response:
        run = Run(start=asyncio.get_running_loop().time())
        self.runs[request.match_info["tag"]].append(run)
        try:
            await asyncio.sleep(int(request.query["hold_ms"]) / 1000)
            run.finished = True
            return web.json_response({"tag": request.match_info["tag"]})
        finally:
            run.end = asyncio.get_running_loop().time()

    def finished(self, tag: str) -> bool:
        return any(run.finished for run in self.runs.get(tag, ()))

    def overlaps(self) -> dict[str, list[tuple[float, float | None]]]:
        """Jobs with two runs at the same time: tag -> their runs."""
        bad = {}
        for tag, runs in self.runs.items():
            ordered = sorted(runs, key=lambda r: r.start)
            for before, after in zip(ordered, ordered[1:]):
                if before.end is None or before.end > after.start:
                    bad[tag] = [(r.start, r.end) for r in ordered]
        return bad


@pytest.fixture
async def recorder() -> Any:
    rec = await RunRecorder().start()
    try:
        yield rec
    finally:
        await rec.close()


# -- load -----------------------------------------------------------------------------

@dataclass
class Load:
    """Submits recorder jobs round-robin through some nodes until stopped."""

    clients: list[AsyncClient]
    recorder: RunRecorder
    acked: dict[str, str] = field(default_factory=dict)  # tag -> job id
    failures: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            tag = f"job-{n}"
            client = self.clients[n % len(self.clients)]
            try:
                job = await client.submit("http", self.recorder.payload(tag), idempotency_key=tag)
                self.acked[tag] = job["id"]
            except ClientError as exc:
                self.failures.append(f"{tag} via {client.base_url}: {exc}")
            await asyncio.sleep(SUBMIT_INTERVAL_S)

    def finished_since(self, first_tag_number: int) -> int:
        return sum(1 for tag in self.acked if int(tag.split("-")[1]) > first_tag_number
                   and self.recorder.finished(tag))


async def all_completed(client: AsyncClient, job_ids: list[str], timeout_s: float = COMPLETION_TIMEOUT_S) -> list[dict]:
    jobs = await client.wait_many(job_ids, timeout_s=timeout_s, poll_interval_s=0.2)
    not_completed = [(j["id"], j["status"], j.get("errors")) for j in jobs if j["status"] != "completed"]
    assert not not_completed, f"acknowledged jobs that did not complete: {not_completed}"
    return jobs


async def running_on(client: AsyncClient, job_ids: list[str], node_id: str) -> list[str]:
    """The jobs among `job_ids` running on one of `node_id`'s workers right now."""
    jobs = await asyncio.gather(*(client.get(job_id) for job_id in job_ids))
    return [j["id"] for j in jobs if j["status"] == "running" and (j["worker_id"] or "").startswith(node_id + "/")]


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        async with session.get(url) as resp:
            assert resp.status == 200, f"GET {url} answered {resp.status}"
            return await resp.json()


def events(cluster: Cluster, node_id: str, name: str) -> list[dict[str, Any]]:
    return [e for e in cluster.nodes[node_id].log_events() if e.get("event") == name]


# -- the proxy itself -----------------------------------------------------------------

async def _echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_proxy_cuts_open_and_new_connections_and_heals():
    server, port = await _echo_server()
    proxy = await TcpProxy(port).start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"ping")
        assert await asyncio.wait_for(reader.readexactly(4), 5) == b"ping"
        proxy.cut()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the open connection is gone
        reader2, _ = await asyncio.open_connection("127.0.0.1", proxy.port)
        assert await asyncio.wait_for(reader2.read(), 5) == b""  # a new one is dropped at once
        proxy.heal()
        reader3, writer3 = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer3.write(b"back")
        assert await asyncio.wait_for(reader3.readexactly(4), 5) == b"back"
        # One way only: the echo of "lost" is swallowed on its way back; after healing,
        # the next echo is the first thing to arrive.
        proxy.cut(FROM_TARGET)
        writer3.write(b"lost")
        await wait_until(lambda: proxy.swallowed_bytes == 4, timeout_s=5, message="the echo was not swallowed")
        proxy.heal()
        writer3.write(b"next")
        assert await asyncio.wait_for(reader3.readexactly(4), 5) == b"next"
        writer3.close()
    finally:
        await proxy.close()
        server.close()


async def test_proxy_cuts_only_the_named_senders_connections():
    server, port = await _echo_server()
    proxy = await TcpProxy(port, identify=http_header_identity("X-Node")).start()
    try:
        async def connect(name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            head = f"GET / HTTP/1.1\r\nX-Node: {name}\r\n\r\n".encode()
            writer.write(head)
            assert await asyncio.wait_for(reader.readexactly(len(head)), 5) == head
            return reader, writer

        (a_reader, _), (b_reader, b_writer) = await connect("a"), await connect("b")
        proxy.cut(source="a")
        assert await asyncio.wait_for(a_reader.read(), 5) == b""
        b_writer.write(b"still")
        assert await asyncio.wait_for(b_reader.readexactly(5), 5) == b"still"
        with pytest.raises(asyncio.IncompleteReadError):
            await connect("a")  # a new connection from "a" is dropped once it says who it is
        proxy.heal(source="a")
        await connect("a")
    finally:
        await proxy.close()
        server.close()


async def test_recorder_sees_two_runs_of_one_job_at_once(recorder):
    url = recorder.payload("twice", hold_ms=300)["url"]
    async with aiohttp.ClientSession() as session:
        async def call() -> int:
            async with session.get(url) as resp:
                return resp.status

        assert await asyncio.gather(call(), call()) == [200, 200]
        async with session.get(recorder.payload("once", hold_ms=10)["url"]):
            pass
    assert set(recorder.overlaps()) == {"twice"}


# -- the cluster ----------------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_every_node_names_the_same_leader(start_cluster, algorithm):
    cluster = await start_cluster(algorithm)
    leader = await cluster.leader()

    async def same_term() -> dict[str, Any] | None:
        views = await cluster.views()
        assert {v["leader_id"] for v in views.values()} == {leader}
        return views if len({v["term"] for v in views.values()}) == 1 else None

    # A node may learn the leader a moment before the term it was elected in.
    views = await wait_until(same_term, timeout_s=10, message="the nodes never agreed on the leader's term")
    assert [n for n, v in views.items() if v["is_leader"]] == [leader]
    assert {v["lease"]["holder"] for v in views.values()} == {leader}

    async def nodes_agree() -> bool:
        for node_id in cluster.nodes:
            rows = (await cluster.client(node_id).nodes())["nodes"]
            if sorted(r["id"] for r in rows) != sorted(cluster.nodes):
                return False
            assert [r["id"] for r in rows if r["is_leader"]] == [leader]
            if any(r["health"] != "healthy" for r in rows):
                return False
        return True

    await wait_until(nodes_agree, timeout_s=15, message="/api/v1/nodes never listed every node, healthy")
    history = await get_json(f"{cluster.nodes[leader].url}/api/v1/elections")
    assert history["count"] >= 1
    assert history["elections"][0]["leader"] == leader
    assert history["elections"][0]["algorithm"] == algorithm


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_leader_killed_under_load_loses_no_job_and_runs_none_twice_at_once(start_cluster, recorder, algorithm):
    cluster = await start_cluster(algorithm)
    old = await cluster.leader()
    old_term = (await cluster.leader_view(old))["term"]
    survivors = [n for n in cluster.nodes if n != old]
    load = Load([cluster.client(n) for n in survivors], recorder)
    generator = asyncio.create_task(load.run())
    try:
        await wait_until(lambda: load.finished_since(0) >= 10, timeout_s=30,
                         message="jobs were not flowing before the kill")
        # Kill it while it runs jobs itself: they must be run again, elsewhere, and only once at a time.
        await wait_until(lambda: running_on(cluster.client(survivors[0]), list(load.acked.values())[-10:], old),
                         timeout_s=30, message=f"{old} never ran a job")
        cluster.kill(old)
        submitted_before_kill = len(load.acked)
        new = await cluster.leader(other_than=old)
        # Keep submitting until jobs sent after the kill are being run again.
        await wait_until(lambda: load.finished_since(submitted_before_kill) >= 10, timeout_s=30,
                         message="no jobs submitted after the kill were run")
    finally:
        load.stop.set()
        await generator
    assert not load.failures, f"live nodes refused submissions: {load.failures[:5]}"
    assert (await cluster.leader_view(new))["term"] > old_term
    jobs = await all_completed(cluster.client(new), list(load.acked.values()))
    assert len(jobs) == len(load.acked) >= 20
    assert not recorder.overlaps(), f"jobs that ran twice at the same time: {recorder.overlaps()}"
    cut_off = [tag for tag, runs in recorder.runs.items() if not runs[0].finished]
    assert cut_off and all(recorder.finished(tag) for tag in cut_off), recorder.runs

    async def loss_recorded() -> list[dict[str, Any]] | None:
        changes = (await get_json(f"{cluster.nodes[new].url}/api/v1/elections"))["elections"]
        return changes if any(c["leader"] == new and c["previous"] == old for c in changes) else None

    # The new leader's entry names the leader it replaced, not "no previous leader".
    await wait_until(loss_recorded, timeout_s=15, message=f"no election entry says {new} replaced {old}")
    if algorithm == "raft":
        history = await get_json(f"{cluster.nodes[new].url}/api/v1/elections")
        leaders_by_term = defaultdict(set)
        for change in history["elections"]:
            leaders_by_term[change["term"]].add(change["leader"])
        assert all(len(ids) == 1 for ids in leaders_by_term.values()), f"two leaders in a term: {leaders_by_term}"


TAKEOVER_TIMEOUT_S = 10.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
async def test_follower_killed_mid_job_has_its_jobs_run_elsewhere(start_cluster, algorithm):
    cluster = await start_cluster(algorithm)
    leader = await cluster.leader()
    victim = next(n for n in cluster.nodes if n != leader)
    client = cluster.client(leader)
    ids = [(await client.submit("sleep", {"seconds": 2.0}))["id"] for _ in range(9)]

    on_victim = await wait_until(lambda: running_on(client, ids, victim), timeout_s=15,
                                 message=f"no job started on {victim}")
    cluster.kill(victim)
    jobs = await all_completed(client, ids)
    for job in jobs:
        if job["id"] in on_victim:
            assert not job["worker_id"].startswith(victim + "/"), job
            assert job["attempts"] >= 2, job
            assert any("stopped answering" in e.get("error", "") or "lease" in e.get("error", "")
                       for e in job["errors"]), job


@pytest.mark.parametrize("algorithm", ["bully", "gossip"])
async def test_the_last_node_standing_still_runs_jobs(start_cluster, algorithm):
    """Without a quorum of its own, bully or gossip keeps one survivor leading (raft needs a majority)."""
    cluster = await start_cluster(algorithm)
    leader = await cluster.leader()
    survivor = next(n for n in cluster.nodes if n != leader)
    for node in cluster.nodes:
        if node != survivor:
            cluster.kill(node)
    assert await cluster.leader(among=[survivor], other_than=leader, timeout_s=TAKEOVER_TIMEOUT_S) == survivor
    client = cluster.client(survivor)
    ids = [(await client.submit("echo", {"n": i}))["id"] for i in range(5)]
    jobs = await all_completed(client, ids)
    assert {job["node_id"] for job in jobs} == {survivor}


PARTITION_ALGORITHMS = ["bully", "raft", "gossip"]


@pytest.mark.parametrize("algorithm", PARTITION_ALGORITHMS)
async def test_isolated_leader_is_replaced_and_fenced(start_cluster, redis_client, key_prefix, algorithm):
    cluster = await start_cluster(algorithm)
    old = await cluster.leader()
    old_token = (await cluster.leader_view(old))["lease"]["fencing_token"]
    others = [n for n in cluster.nodes if n != old]
    cluster.isolate(old)
    new = await cluster.leader(among=others, other_than=old, timeout_s=TAKEOVER_TIMEOUT_S)
    # The old leader's token is dead: a dispatch with it is refused, however sure it is of leading.
    queue = JobQueue(redis_client, key_prefix)
    with pytest.raises(NotLeader):
        await queue.dispatch(old, old_token, max_jobs=1, strategy="round_robin", lease_ms=3000, share_every=0)
    await wait_until(lambda: events(cluster, old, "leadership.lost")
                     or [e for e in events(cluster, old, "leadership.changed") if e.get("token") is None],
                     timeout_s=10, message=f"{old} never logged losing the lease")
    # The isolated node still takes jobs (Redis and MongoDB are reachable); the new leader runs them.
    submitted = [(await cluster.client(old).submit("echo", {"n": i}))["id"] for i in range(5)]
    await all_completed(cluster.client(new), submitted)
    assert (await cluster.leader_view(new))["lease"]["holder"] == new

    cluster.heal()
    leader = await cluster.leader()
    views = await cluster.views()
    assert [n for n, v in views.items() if v["is_leader"]] == [leader]
    after = [(await cluster.client(n).submit("echo", {"after": n}))["id"] for n in cluster.nodes]
    await all_completed(cluster.client(leader), after)


@pytest.mark.parametrize("algorithm", ["bully", "gossip"])
async def test_split_brain_runs_every_job_once_at_a_time_and_heals_to_one_leader(start_cluster, recorder, algorithm):
    # Bully and gossip elect a leader on each side of a partition; the lease lets only one
    # of them dispatch, so jobs sent to either side all complete, none twice at once.
    cluster = await start_cluster(algorithm)
    old = await cluster.leader()
    others = [n for n in cluster.nodes if n != old]
    cluster.isolate(old)
    await cluster.leader(among=others, other_than=old, with_lease=False)
    assert (await cluster.leader_view(old))["leader_id"] == old
    tags = [f"split-{node_id}-{i}" for node_id in cluster.nodes for i in range(3)]
    ids = [(await cluster.client(tag.split("-", 1)[1].rsplit("-", 1)[0]).submit("http", recorder.payload(tag)))["id"]
           for tag in tags]
    await all_completed(cluster.client(others[0]), ids)

    cluster.heal()
    leader = await cluster.leader()

    async def one_leader_one_term() -> bool:
        views = await cluster.views()
        assert {v["leader_id"] for v in views.values()} == {leader}
        return len({v["term"] for v in views.values()}) == 1

    await wait_until(one_leader_one_term, timeout_s=10, message="the nodes' terms never converged after healing")
    after = [(await cluster.client(n).submit("echo", {"after": n}))["id"] for n in cluster.nodes]
    await all_completed(cluster.client(leader), after)
    assert not recorder.overlaps(), f"jobs that ran twice at the same time: {recorder.overlaps()}"


async def test_restarted_raft_node_keeps_its_term_and_vote(start_cluster):
    cluster = await start_cluster("raft")
    old = await cluster.leader()
    state_file = cluster.nodes[old].data_dir / "raft-state.json"
    cluster.kill(old)
    await cluster.wait_exit(old)
    before = json.loads(state_file.read_text())
    assert before["term"] >= 1 and before["voted_for"] == old  # a leader voted for itself
    new = await cluster.leader(other_than=old)

    await cluster.restart(old)
    restored = [e["restored_term"] for e in events(cluster, old, "election.starting")]
    assert restored[-1] == before["term"], f"restart restored terms {restored}, expected {before['term']}"
    await cluster.leader()
    after = json.loads(state_file.read_text())
    assert after["term"] >= before["term"]
    if after["term"] == before["term"]:
        assert after["voted_for"] == before["voted_for"]
    assert (await cluster.leader_view(old))["term"] >= before["term"]
    # The new leader's term is above the one the old leader was elected in.
    assert (await cluster.leader_view(new))["term"] > before["term"]
