"""A 3-node cluster whose peers talk https with mutual TLS elects a leader and fails over."""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import pytest

from tests.cluster_harness import Cluster, start_cluster  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow


async def election_view(cluster: Cluster, node_id: str) -> dict[str, Any]:
    assert cluster.certs is not None
    context = ssl.create_default_context(cafile=str(cluster.certs.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.get(cluster.nodes[node_id].url + "/api/v1/election") as resp:
            return await resp.json()


async def test_a_tls_cluster_elects_over_https_and_fails_over(start_cluster):
    cluster = await start_cluster("raft", nodes=3, tls=True)
    leader = await cluster.leader()
    for node_id in cluster.nodes:
        election = await election_view(cluster, node_id)
        assert election["peer_messages"]["refused"] == 0
        assert all(member["address"].startswith("https://") for member in election["members"])
    messages = [(await election_view(cluster, n))["peer_messages"]["received"] for n in cluster.nodes]
    assert sum(messages) > 0  # the leader came from messages over https, not from a lone node

    follower = next(node_id for node_id in cluster.nodes if node_id != leader)
    job = await cluster.client(follower).submit("echo", {"over": "https"})
    assert (await cluster.client(follower).wait(job["id"], timeout_s=30))["status"] == "completed"

    cluster.kill(leader)
    survivors = [node_id for node_id in cluster.nodes if node_id != leader]
    assert await cluster.leader(among=survivors, other_than=leader) in survivors
