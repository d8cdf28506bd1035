"""Per-client rate limiting: the Redis token bucket, its headers, exemptions, and failing open."""

from __future__ import annotations

import time

import orjson
import pytest
from aiohttp.test_utils import make_mocked_request
from redis.asyncio import Redis

from jobnode.api.access import PRINCIPAL
from jobnode.api.appkeys import RATE_LIMITER
from jobnode.auth.roles import Principal
from jobnode.dev.embedded import free_port
from jobnode.cluster.peers import ELECTION_PATH
from jobnode.api.ratelimit import client_key
from jobnode.services.rate_limiter import RateLimiter
from jobnode.storage.redis.rate_buckets import RateBuckets
from jobnode import election
from jobnode.election.messages import BullyElection
from jobnode.auth.peer_signatures import sign
from tests.auth_fixtures import auth_env, bearer, forged
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until


async def test_a_burst_is_served_then_refused_with_retry_after(start_node):
    client = await start_node(RATE_LIMIT="60", RATE_LIMIT_BURST="3")
    remaining = []
    for _ in range(3):
        answer = await client.get("/api/v1/leader")
        assert answer.status == 200
        assert answer.headers["X-RateLimit-Limit"] == "3"
        remaining.append(int(answer.headers["X-RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]
    refused = await client.get("/api/v1/leader")
    assert refused.status == 429
    body = await refused.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"] == {"limit_per_min": 60, "burst": 3}
    # One token a second at 60/min: the next one is at most a second away, and never "0".
    assert refused.headers["Retry-After"] == "1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["X-RateLimit-Reset"]) <= 3  # all three tokens back within 3 s


async def test_errors_carry_the_headers_too_and_count_against_the_budget(start_node):
    client = await start_node(RATE_LIMIT="600", RATE_LIMIT_BURST="2")
    missing = await client.get("/api/v1/jobs/" + "0" * 32)
    assert missing.status == 404 and missing.headers["X-RateLimit-Remaining"] == "1"
    bad = await client.post("/api/v1/jobs", data=b"not json", headers={"Content-Type": "application/json"})
    assert bad.status == 400 and bad.headers["X-RateLimit-Remaining"] == "0"
    assert (await client.get("/api/v1/stats")).status == 429


async def test_health_and_signed_peer_traffic_are_never_limited(start_node):
    secret = "ZpYTdDk2Z6-JQ5SE52-W1AZtLcuKPOykDCq7zPc4BjQ"
    client = await start_node(RATE_LIMIT="60", RATE_LIMIT_BURST="1", CLUSTER_SECRET=secret)
    assert (await client.get("/api/v1/leader")).status == 200
    assert (await client.get("/api/v1/leader")).status == 429
    for epoch in range(1, 6):
        health = await client.get("/health")
        assert health.status == 200 and "X-RateLimit-Limit" not in health.headers
        body = _signed_vote(epoch)
        headers = {"Content-Type": "application/json",
                   **sign(secret.encode(), "POST", ELECTION_PATH, "node-9", body, time.time())}
        assert (await client.post(ELECTION_PATH, data=body, headers=headers)).status == 204


def _signed_vote(epoch: int) -> bytes:
    message = BullyElection(src="node-9", dst="node-1", src_address="http://127.0.0.1:1",
                            dst_address="http://127.0.0.1:2", epoch=epoch, priority=0)
    return orjson.dumps(election.encode(message))


async def test_refusals_are_counted_per_address(start_node):
    client = await start_node(RATE_LIMIT="60", RATE_LIMIT_BURST="3", CLUSTER_SECRET="ZpYTdDk2Z6-JQ5SE52-W1AZtLcuKPOykDCq7zPc4BjQ",
                              **auth_env())
    forged_token = bearer(forged("a-wrong-key-of-at-least-32-bytes-0123456789"))
    statuses = [(await client.get("/api/v1/jobs", headers=forged_token)).status for _ in range(5)]
    assert statuses == [401, 401, 401, 429, 429]
    # The address's bucket is empty now, so unsigned peer requests are refused by the limit too.
    peer = await client.post(ELECTION_PATH, data=b"{}", headers={"Content-Type": "application/json"})
    assert peer.status == 429 and "Retry-After" in peer.headers


async def test_refused_peer_requests_are_counted_per_address(start_node):
    client = await start_node(RATE_LIMIT="60", RATE_LIMIT_BURST="2", CLUSTER_SECRET="ZpYTdDk2Z6-JQ5SE52-W1AZtLcuKPOykDCq7zPc4BjQ")
    statuses = [(await client.post(ELECTION_PATH, data=b"{}", headers={"Content-Type": "application/json"})).status
                for _ in range(4)]
    assert statuses == [401, 401, 429, 429]


async def test_tokens_come_back_at_the_configured_rate(start_node):
    # 6000 per minute is one token every 10 ms.
    client = await start_node(RATE_LIMIT="6000", RATE_LIMIT_BURST="1")
    assert (await client.get("/api/v1/leader")).status == 200

    async def served_again() -> bool:
        return (await client.get("/api/v1/leader")).status == 200

    await wait_until(served_again, timeout_s=10, interval_s=0.05, message="the bucket never refilled")


async def test_two_nodes_share_one_clients_budget(start_node):
    first = await start_node(RATE_LIMIT="60", RATE_LIMIT_BURST="2")
    second = await start_node(RATE_LIMIT="60", RATE_LIMIT_BURST="2", NODE_ID="node-2")
    assert (await first.get("/api/v1/leader")).status == 200
    assert (await second.get("/api/v1/leader")).status == 200
    assert (await first.get("/api/v1/leader")).status == 429
    assert (await second.get("/api/v1/leader")).status == 429


async def test_a_client_is_its_subject_when_authenticated_else_its_address():
    anonymous = make_mocked_request("GET", "/api/v1/jobs")
    assert client_key(anonymous).startswith("ip:")
    request = make_mocked_request("GET", "/api/v1/jobs")
    request[PRINCIPAL] = Principal("alice", "user")
    assert client_key(request) == "user:alice"
    huge = make_mocked_request("GET", "/api/v1/jobs")
    huge[PRINCIPAL] = Principal("x" * 10_000, "user")
    assert client_key(huge).startswith("user:sha256:") and len(client_key(huge)) < 100


async def test_an_unreachable_redis_lets_requests_through_and_is_counted(start_node):
    client = await start_node(RATE_LIMIT="60", RATE_LIMIT_BURST="1")
    limiter = client.app[RATE_LIMITER]
    dead = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
    try:
        # The node's own Redis stays up (jobs need it); only the limiter loses its connection.
        limiter.buckets = RateBuckets(dead, client.settings.redis_key_prefix)
        for _ in range(3):
            answer = await client.get("/api/v1/leader")
            assert answer.status == 200 and "X-RateLimit-Limit" not in answer.headers
        counters = (await (await client.get("/api/v1/stats")).json())["rate_limit"]
        assert counters["fail_open"] == 4 and counters["limited"] == 0
    finally:
        await dead.aclose()


async def test_the_bucket_script_never_hands_out_more_than_the_burst(redis_client, key_prefix):
    limiter = RateLimiter(RateBuckets(redis_client, key_prefix), rate_per_min=1, burst=5)
    decisions = [await limiter.check("ip:192.0.2.1") for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert decisions[-1].retry_after_s == pytest.approx(60, abs=2)
    other = await limiter.check("ip:192.0.2.2")
    assert other.allowed and other.remaining == 4  # buckets are per client
    ttl_ms = await redis_client.pttl(f"{key_prefix}:rl:ip:192.0.2.1")
    assert 0 < ttl_ms <= 5 * 60_000 + 1000  # an idle bucket expires once it would be full


async def test_rate_limit_off_means_no_headers_and_no_limiter(start_node):
    client = await start_node()
    answer = await client.get("/api/v1/leader")
    assert "X-RateLimit-Limit" not in answer.headers
    assert (await (await client.get("/api/v1/stats")).json())["rate_limit"] == {"enabled": False}
