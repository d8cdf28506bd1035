"""A client given several nodes: which requests move to another node, and when they must not.

Against the contract peers of tests/test_client.py (real HTTP servers), a port nothing listens on,
and a peer that reads a request and hangs up without answering. The same behaviour against real
nodes killed under load is tests/test_two_of_three.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from jobnode.client import AsyncClient, Client, ConnectionFailed, ServiceUnavailable
from tests.test_client import ContractServer, PauseRecordingClient, closed_port


@pytest.fixture
def servers():
    peers = [ContractServer(), ContractServer()]
    for peer in peers:
        peer.start()
    yield peers
    for peer in peers:
        peer.stop()


class HangUp:
    """Accepts a connection, reads the request's first bytes, and closes without an answer:
    the request reached a node that may have acted on it."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []  # request lines

    async def __aenter__(self) -> HangUp:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head.split(b"\r\n", 1)[0])
        writer.close()


@pytest.fixture
async def hang_up() -> AsyncIterator[HangUp]:
    async with HangUp() as peer:
        yield peer


def test_urls_come_as_a_list_or_one_string_with_commas() -> None:
    assert AsyncClient("http://a:1, http://b:2/").urls == ["http://a:1", "http://b:2"]
    assert AsyncClient(["http://a:1", "https://b:2"]).base_url == "http://a:1"
    with pytest.raises(ValueError, match="ftp://c"):
        AsyncClient("http://a:1,ftp://c")
    with pytest.raises(ValueError, match="no node"):
        AsyncClient([])


async def test_a_read_moves_past_a_dead_node_and_stays_on_the_live_one(servers) -> None:
    live = servers[0]
    job = live.add_job()
    async with PauseRecordingClient([f"http://127.0.0.1:{closed_port()}", live.url]) as client:
        assert (await client.get(job["id"]))["id"] == job["id"]
        assert client.base_url == live.url
        assert client.pauses == []  # another node is tried at once, not after a back-off
        await client.get(job["id"])
        assert live.count("GET", f"/api/v1/jobs/{job['id']}") == 2


async def test_a_keyed_submission_moves_on_503_and_is_sent_again(servers) -> None:
    stopping, live = servers
    stopping.fail_next("POST", "/api/v1/jobs", 503, times=5,
                       body={"error": {"code": "unavailable", "message": "stopping"}})
    async with AsyncClient([stopping.url, live.url]) as client:
        job = await client.submit("echo", idempotency_key="order-1")
    assert job["id"] in live.jobs
    assert (stopping.count("POST", "/api/v1/jobs"), live.count("POST", "/api/v1/jobs")) == (1, 1)


async def test_an_unkeyed_submission_moves_only_when_nothing_was_sent(servers, hang_up) -> None:
    first, second = servers
    # Refused: the request never left, so another node may take it.
    async with AsyncClient([f"http://127.0.0.1:{closed_port()}", first.url]) as client:
        await client.submit("echo")
    assert first.count("POST", "/api/v1/jobs") == 1
    # A 503 from a node that read it: the caller decides, the next node never sees it.
    first.fail_next("POST", "/api/v1/jobs", 503, body={"error": {"code": "unavailable", "message": "no"}})
    async with AsyncClient([first.url, second.url]) as client:
        with pytest.raises(ServiceUnavailable):
            await client.submit("echo")
    # Sent, then the connection dropped: it may have been accepted, so it is not sent again anywhere.
    async with AsyncClient([hang_up.url, second.url]) as client:
        with pytest.raises(ConnectionFailed) as caught:
            await client.submit("echo")
        assert caught.value.sent
        # A safe request from the same state does move on.
        assert (await client.stats())["node_count"] == 2
    assert hang_up.requests.count(b"POST /api/v1/jobs HTTP/1.1") == 1
    assert second.count("POST", "/api/v1/jobs") == 0


async def test_every_node_down_gives_up_after_max_attempts_rounds() -> None:
    dead = [f"http://127.0.0.1:{closed_port()}" for _ in range(3)]
    async with PauseRecordingClient(dead, max_attempts=2) as client:
        with pytest.raises(ConnectionFailed):
            await client.stats()
    assert len(client.pauses) == 1  # one back-off between the two rounds of three nodes


def test_the_blocking_client_takes_several_nodes(servers) -> None:
    with Client(f"http://127.0.0.1:{closed_port()},{servers[1].url}") as client:
        assert client.submit("echo", idempotency_key="k-1")["status"] == "pending"


def test_the_cli_fails_over_between_the_urls_of_jobnode_url(servers, capsys, monkeypatch, tmp_path) -> None:
    from jobnode.cli.main import main  # noqa: PLC0415 - the CLI only for this test

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("JOBNODE_TOKEN", raising=False)
    live = servers[1]
    monkeypatch.setenv("JOBNODE_URL", f"http://127.0.0.1:{closed_port()},{live.url}")
    assert main(["submit", "echo", "--key", "cli-1", "--json"]) == 0
    job = json.loads(capsys.readouterr().out.splitlines()[0])
    assert job["id"] in live.jobs
    assert main(["jobs", "get", job["id"], "--url", f"{live.url},http://127.0.0.1:{closed_port()}"]) == 0
    assert job["id"] in capsys.readouterr().out
