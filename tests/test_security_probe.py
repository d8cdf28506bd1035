"""The security probe, kept: a secure cluster (auth, mutual TLS, rate limits) attacked from outside.

Every operation of the live OpenAPI document is called by every kind of caller: no token, tokens
forged with wrong keys or without a signature, an expired one, and each role. Then the peer route
is tried with one node's certificate speaking for another, and the http processor is aimed at
the node's own metrics port.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import aiohttp
import orjson
import pytest

from jobnode import election
from jobnode.election.messages import RaftAppendEntries
from jobnode.auth.peer_signatures import sign
from jobnode.auth.tls import peer_client_context
from jobnode.client import AsyncClient
from jobnode.cluster.peers import ELECTION_PATH
from tests.auth_fixtures import JWT_SECRET, auth_env, bearer, forged, token_for
from tests.cluster_harness import Cluster, start_cluster  # noqa: F401  (the fixture)
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

WRONG_KEY = "another-cluster-s-key-of-32-bytes-or-more-0123"
NOW = int(time.time())
FORGED = {
    "wrong key": forged(WRONG_KEY),
    "wrong kid": forged(kid="0000000000000000"),
    "unsigned": forged(algorithm="none"),
    "expired": forged(iat=NOW - 7200, nbf=NOW - 7200, exp=NOW - 3600),
    "too long-lived": forged(iat=NOW, nbf=NOW, exp=NOW + 30 * 86400),
}
ROLES_ALLOWED = {"user": {"user", "admin"}, "admin": {"admin"}, "user or worker": {"user", "admin", "worker"}}


def admin_client(cluster: Cluster, node_id: str) -> AsyncClient:
    assert cluster.certs is not None
    return AsyncClient(cluster.nodes[node_id].url, token=token_for("admin"), ca_file=str(cluster.certs.ca_file))


def concrete(path: str) -> str:
    return (path.replace("{job_id}", "0" * 32).replace("{name}", "raft").replace("{scope}", "queue")
            .replace("{node_id}", "node-9"))


async def call(session: aiohttp.ClientSession, url: str, method: str, path: str, headers: dict[str, str],
               *, stream: bool = False) -> int:
    body = {"type": "echo"} if path == "/api/v1/jobs" else {"jobs": [{"type": "echo"}]}
    kwargs: dict[str, Any] = {"json": body} if method == "post" else {}
    async with session.request(method.upper(), url + concrete(path), headers=headers, **kwargs) as resp:
        if not (stream and resp.status == 200):  # an event stream never ends: its status says enough
            await resp.read()
        return resp.status


async def test_every_operation_against_every_caller_on_a_secure_cluster(start_cluster):
    cluster: Cluster = await start_cluster("raft", nodes=3, tls=True, **auth_env())
    await cluster.leader()
    assert cluster.certs is not None
    context = ssl.create_default_context(cafile=str(cluster.certs.ca_file))
    url = cluster.nodes["node-1"].url
    failures = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.get(url + "/api/v1/openapi.json") as resp:
            document = await resp.json()
        callers = {"no token": {}, **{name: bearer(token) for name, token in FORGED.items()},
                   **{role: bearer(token_for(role)) for role in ("worker", "user", "admin")}}
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                level = operation.get("x-jobnode-access", "any")
                if level.startswith("peer") or path == "/auth/login":
                    continue
                for caller, headers in callers.items():
                    if operation.get("x-jobnode-stops-node") and caller in ROLES_ALLOWED[level]:
                        continue  # served, it takes the probed node out: tests/test_membership.py covers it
                    status = await call(session, url, method, path, headers,
                                        stream=bool(operation.get("x-jobnode-stream")))
                    if level == "any":
                        expected = "served"
                    elif caller in ("worker", "user", "admin"):
                        expected = "served" if caller in ROLES_ALLOWED[level] else 403
                    else:
                        expected = 401
                    got = status if status in (401, 403) else "served"
                    if got != expected or status >= 500:
                        failures.append(f"{method.upper()} {path} as {caller}: expected {expected}, got {status}")
    assert failures == []


async def send_absurd_term(cluster: Cluster, context: ssl.SSLContext, *, sender: str, target: str) -> int:
    """POST a raft AppendEntries with term 2**63-1, signed as `sender`; the answer's status."""
    message = RaftAppendEntries(src=sender, dst=target, src_address=cluster.nodes[sender].url,
                                dst_address=cluster.nodes[target].url, term=2**63 - 1, prev_log_index=0,
                                prev_log_term=0, entries=(), leader_commit=0)
    body = orjson.dumps(election.encode(message))
    headers = {"Content-Type": "application/json",
               **sign(cluster.secret.encode(), "POST", ELECTION_PATH, sender, body, time.time())}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        async with session.post(cluster.nodes[target].url + ELECTION_PATH, data=body, headers=headers) as resp:
            return resp.status


async def test_one_node_s_certificate_cannot_speak_for_another(start_cluster):
    cluster: Cluster = await start_cluster("raft", nodes=3, tls=True, **auth_env())
    leader = await cluster.leader()
    assert cluster.certs is not None
    target = next(node_id for node_id in cluster.nodes if node_id != leader)
    impostor = next(node_id for node_id in cluster.nodes if node_id not in (leader, target))
    pair = cluster.certs.nodes[impostor]
    context = peer_client_context(cluster.certs.ca_file, pair.cert_file, pair.key_file)
    # Signed as the leader but sent with the impostor's certificate: refused.
    assert await send_absurd_term(cluster, context, sender=leader, target=target) == 401
    # Signed as itself, the impostor's absurd term is dropped by the term bound: the leader stays.
    assert await send_absurd_term(cluster, context, sender=impostor, target=target) == 204
    view = await cluster.leader_view(target)
    assert view["term"] < 2**53 and await cluster.leader() == leader
    async with admin_client(cluster, target) as client:
        job = await client.submit("echo", {"after": "absurd term"})

        async def finished() -> bool:
            return (await client.get(job["id"]))["status"] == "completed"

        await wait_until(finished, timeout_s=30, message="a job stayed pending after an absurd term")


async def test_an_admin_s_http_job_cannot_reach_the_node_s_own_ports(start_cluster):
    # HTTP_PROCESSOR_ALLOW empty: the policy's defaults, not the harness's loopback allowance.
    cluster: Cluster = await start_cluster("raft", nodes=3, tls=True, HTTP_PROCESSOR_ALLOW="", **auth_env())
    await cluster.leader()
    port = int(cluster.nodes["node-1"].url.rsplit(":", 1)[1])
    async with admin_client(cluster, "node-1") as client:
        job = await client.submit("http", {"url": f"https://127.0.0.1:{port}/health"})
        done = await client.wait(job["id"], timeout_s=30)
    assert done["status"] == "failed" and "destination not allowed" in done["error"]
    assert JWT_SECRET not in str(done)
