"""ClusterService on its own: peer messages are verified before delivery, and the views it builds."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import orjson
import pytest

from jobnode import election
from jobnode.election.messages import BullyElection
from jobnode.auth.peer_signatures import Verifier, sign
from jobnode.cluster.elector import ElectionView
from jobnode.cluster.quorum import PeerContact
from jobnode.cluster.recorder import DOWN_AFTER_S
from jobnode.core.errors import NotFound, Unauthorized, ValidationError
from jobnode.core.job import utcnow
from jobnode.core.settings import Settings
from jobnode.services.cluster import PEER_MESSAGE_PATH, ClusterService

SECRET = b"a-cluster-secret-of-enough-bytes"


class FakeElector:
    """The parts of the elector the service reads, and a record of what it was handed."""

    def __init__(self) -> None:
        self.view = ElectionView()
        self.contact = PeerContact(["http://127.0.0.1:2"], window_s=5.0)
        self.role = "follower"
        self.machine = None  # no election machine: the membership reads as "not joined"
        self.joined = False
        self.received = 0
        self.delivered: list[Any] = []

    async def deliver(self, message: Any) -> None:
        self.received += 1
        self.delivered.append(message)


class FakeClusterStore:
    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = nodes

    async def all_nodes(self) -> list[dict[str, Any]]:
        return [dict(doc) for doc in self.nodes]


def service(elector: FakeElector, store: Any = None, **env: str) -> ClusterService:
    settings = Settings.from_env({"NODE_ID": "node-1", "ELECTION_ALGORITHM": "bully", **env}, env_file=None)
    return ClusterService(settings, elector, leadership=None, store=store, verifier=Verifier(SECRET))  # type: ignore[arg-type]


def election_message() -> bytes:
    message = BullyElection(src="node-0", dst="node-1", src_address="http://127.0.0.1:1",
                            dst_address="http://127.0.0.1:2", epoch=1, priority=0)
    return orjson.dumps(election.encode(message))


def signed(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return sign(secret, "POST", PEER_MESSAGE_PATH, "node-0", body, time.time())


async def test_a_signed_election_message_is_delivered_decoded():
    elector = FakeElector()
    body = election_message()
    await service(elector).receive_peer_message("POST", PEER_MESSAGE_PATH, signed(body), body)
    assert elector.delivered == [election.decode(orjson.loads(body))]


async def test_an_unsigned_or_forged_message_is_refused_counted_and_not_delivered():
    elector = FakeElector()
    cluster = service(elector)
    body = election_message()
    with pytest.raises(Unauthorized):
        await cluster.receive_peer_message("POST", PEER_MESSAGE_PATH, {}, body)
    with pytest.raises(Unauthorized):
        await cluster.receive_peer_message("POST", PEER_MESSAGE_PATH, signed(body, b"not-the-secret-at-all-00"), body)
    assert elector.delivered == []
    assert cluster.election()["peer_messages"] == {"received": 0, "refused": 2}


async def test_a_replayed_message_is_delivered_once():
    elector = FakeElector()
    cluster = service(elector)
    body = election_message()
    headers = signed(body)
    await cluster.receive_peer_message("POST", PEER_MESSAGE_PATH, headers, body)
    with pytest.raises(Unauthorized, match="replay"):
        await cluster.receive_peer_message("POST", PEER_MESSAGE_PATH, headers, body)
    assert len(elector.delivered) == 1


@pytest.mark.parametrize("body", [b"not json", b'{"kind": "raft.vote", "term": "many"}', b"[]"])
async def test_a_signed_body_that_is_no_election_message_is_invalid(body):
    elector = FakeElector()
    with pytest.raises(ValidationError) as caught:
        await service(elector).receive_peer_message("POST", PEER_MESSAGE_PATH, signed(body), body)
    assert caught.value.field == "body"
    assert elector.delivered == []


def test_an_unknown_algorithm_is_not_found_with_the_valid_names():
    with pytest.raises(NotFound) as caught:
        service(FakeElector()).algorithm("paxos")
    assert caught.value.details == {"valid_names": list(election.ALGORITHM_NAMES)}


def test_only_the_current_algorithm_carries_the_settings():
    cluster = service(FakeElector())
    assert cluster.algorithm("bully")["current_settings"]["peers"] == []
    assert "current_settings" not in cluster.algorithm("raft")
    listed = cluster.algorithms()
    assert listed["current"] == "bully"
    assert [a["current"] for a in listed["algorithms"]] == [n == "bully" for n in election.ALGORITHM_NAMES]


async def test_nodes_are_judged_by_their_last_heartbeat_and_this_nodes_view():
    elector = FakeElector()
    elector.view.leader = "node-1"
    now = utcnow()
    store = FakeClusterStore([
        {"_id": "node-1", "address": "http://n1", "role": "leader", "last_heartbeat": now, "started_at": now},
        {"_id": "node-2", "address": "http://n2", "role": "follower",
         "last_heartbeat": now - timedelta(seconds=DOWN_AFTER_S + 60)},
    ])
    cluster = await service(elector, store).cluster()
    first, second = cluster["nodes"]
    assert (first["id"], first["is_leader"], first["health"], first["role"]) == ("node-1", True, "healthy", "leader")
    assert (second["health"], second["role"], second["is_leader"]) == ("down", "unreachable", False)
    assert cluster["cluster_size"] == 1 and cluster["leader"] == first
    assert cluster["election_algorithm"] == "bully"
