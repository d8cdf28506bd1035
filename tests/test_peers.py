"""Peer traffic: signatures, the guarded election route, per-peer lanes, raft's state file."""

from __future__ import annotations

import asyncio
import time

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from jobnode import election
from jobnode.election.messages import BullyElection
from jobnode.cluster.elector import RaftStateFile
from jobnode.core.errors import Unauthorized
from jobnode.auth.peer_signatures import SIGNATURE_HEADER, Verifier, sign
from jobnode.cluster.peers import ELECTION_PATH, QUEUE_SIZE, PeerTransport
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until

SECRET = b"a-cluster-secret-of-enough-bytes"


def signed(body: bytes, *, secret: bytes = SECRET, path: str = ELECTION_PATH, now: float | None = None):
    return sign(secret, "POST", path, "node-9", body, time.time() if now is None else now)


def test_a_signed_request_is_accepted_once():
    verifier = Verifier(SECRET)
    headers = signed(b"{}")
    assert verifier.check("POST", ELECTION_PATH, headers, b"{}", time.time()) == "node-9"
    with pytest.raises(Unauthorized, match="replay"):
        verifier.check("POST", ELECTION_PATH, headers, b"{}", time.time())


@pytest.mark.parametrize(
    "change",
    ["body", "path", "secret", "sender", "stale", "missing"],
)
def test_tampered_or_stale_requests_are_refused(change):
    verifier = Verifier(SECRET)
    body, path, now = b'{"a": 1}', ELECTION_PATH, time.time()
    headers = signed(body, secret=b"another-secret-entirely-000000" if change == "secret" else SECRET,
                     now=now - 120 if change == "stale" else now)
    if change == "body":
        body = b'{"a": 2}'
    if change == "path":
        path = "/internal/v1/other"
    if change == "sender":
        headers["X-Jobnode-Node"] = "node-1"
    if change == "missing":
        del headers[SIGNATURE_HEADER]
    with pytest.raises(Unauthorized):
        verifier.check("POST", path, headers, body, now)
    assert verifier.refused == 1


def _vote_request() -> bytes:
    message = BullyElection(src="node-9", dst="node-1", src_address="http://127.0.0.1:1",
                            dst_address="http://127.0.0.1:2", epoch=1, priority=0)
    return orjson.dumps(election.encode(message))


async def test_the_election_route_lets_in_only_the_cluster(start_node):
    secret = "ZpYTdDk2Z6-JQ5SE52-W1AZtLcuKPOykDCq7zPc4BjQ"
    client = await start_node(CLUSTER_SECRET=secret, ELECTION_ALGORITHM="bully")
    body = _vote_request()
    unsigned = await client.post(ELECTION_PATH, data=body, headers={"Content-Type": "application/json"})
    assert unsigned.status == 401
    forged = await client.post(ELECTION_PATH, data=body, headers=signed(body, secret=b"not-the-cluster-secret-x"))
    assert forged.status == 401
    garbage = b'{"kind": "raft.vote", "term": "many"}'
    bad = await client.post(ELECTION_PATH, data=garbage, headers=signed(garbage, secret=secret.encode()))
    assert bad.status == 400 and (await bad.json())["error"]["code"] == "invalid_request"
    good = await client.post(ELECTION_PATH, data=body, headers=signed(body, secret=secret.encode()))
    assert good.status == 204
    counts = (await (await client.get("/api/v1/election")).json())["peer_messages"]
    assert counts == {"received": 1, "refused": 2}


async def test_a_slow_peer_never_holds_up_a_fast_one():
    received: list[bytes] = []
    release = asyncio.Event()

    async def fast(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.Response(status=204)

    async def stuck(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=204)

    fast_app, stuck_app = web.Application(), web.Application()
    fast_app.router.add_post(ELECTION_PATH, fast)
    stuck_app.router.add_post(ELECTION_PATH, stuck)
    async with TestServer(fast_app) as fast_server, TestServer(stuck_app) as stuck_server:
        transport = PeerTransport("node-1", SECRET, timeout_s=30)
        await transport.start()
        try:
            stuck_url, fast_url = str(stuck_server.make_url("/")), str(fast_server.make_url("/"))
            for i in range(QUEUE_SIZE + 20):
                transport.send(stuck_url, b"%d" % i)
            for i in range(QUEUE_SIZE):
                transport.send(fast_url, b"%d" % i)
            await wait_until(lambda: len(received) == QUEUE_SIZE, timeout_s=10,
                             message="the fast peer did not get every message")
            assert received == [b"%d" % i for i in range(QUEUE_SIZE)]  # in order
            assert transport.stats[stuck_url].dropped > 0  # its lane stayed bounded
        finally:
            release.set()
            await transport.stop()


def test_raft_state_survives_a_rewrite(tmp_path):
    state_file = RaftStateFile(tmp_path / "node")
    assert state_file.load() is None
    state_file.save(election.RaftPersistentState(term=7, voted_for="node-2"))
    state_file.save(election.RaftPersistentState(term=8, voted_for=None))
    assert state_file.load() == election.RaftPersistentState(term=8, voted_for=None)
    assert [p.name for p in (tmp_path / "node").iterdir()] == ["raft-state.json"]
