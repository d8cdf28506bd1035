"""Hostile input the other suites do not cover: header injection and smuggling, path traversal in ids
and route names, and tricks that would dodge the rate limit. Never a 5xx, never an echoed header.

Raw bytes go over a plain socket, because HTTP client libraries refuse (or repair) exactly the
requests an attacker sends.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp.test_utils import TestClient

from jobnode.cluster.peers import ELECTION_PATH
from tests.harness import start_node  # noqa: F401  (fixture)

UNKNOWN_ID = "0" * 32


async def send_raw(client: TestClient, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send one request exactly as given; return the status, the headers (lower-case names), the body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def get(path: str, *extra_headers: bytes) -> bytes:
    return b"GET " + path.encode("latin-1") + b" HTTP/1.1\r\nHost: node\r\n" + b"".join(
        h + b"\r\n" for h in extra_headers) + b"Connection: close\r\n\r\n"


def post(path: str, body: bytes, *extra_headers: bytes) -> bytes:
    head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: node\r\nContent-Type: application/json\r\n"
    return head + b"".join(h + b"\r\n" for h in extra_headers) + b"Connection: close\r\n\r\n" + body


# --- header injection ---------------------------------------------------------------------------

MALFORMED_HEADERS = {
    "bare_cr_in_value": b"Idempotency-Key: a\rSet-Cookie: injected=1",
    "nul_in_value": b"Idempotency-Key: a\x00b",
    "obsolete_line_folding": b"Idempotency-Key: a\r\n Set-Cookie: injected=1",
    "space_before_colon": b"Idempotency-Key : a",
    "no_colon": b"Set-Cookie injected",
}


@pytest.mark.parametrize("header", MALFORMED_HEADERS.values(), ids=MALFORMED_HEADERS.keys())
async def test_malformed_header_lines_are_refused_before_any_handler(start_node, header):
    client = await start_node(WORKER_COUNT="0")
    body = b'{"type": "echo"}'
    status, headers, _ = await send_raw(client, post("/api/v1/jobs", body, header,
                                                     b"Content-Length: %d" % len(body)))
    assert status == 400
    assert "set-cookie" not in headers
    listed = await (await client.get("/api/v1/jobs")).json()
    assert listed["count"] == 0  # the request never reached the submit handler


SMUGGLING = {
    "two_content_lengths": (b"Content-Length: 16", b"Content-Length: 5"),
    "length_and_chunked": (b"Content-Length: 16", b"Transfer-Encoding: chunked"),
    "chunked_twice": (b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"),
    "odd_transfer_encoding": (b"Transfer-Encoding: xchunked",),
    "negative_length": (b"Content-Length: -16",),
    "huge_length": (b"Content-Length: 99999999999999999999999999",),
}


@pytest.mark.parametrize("headers", SMUGGLING.values(), ids=SMUGGLING.keys())
async def test_ambiguous_body_framing_is_refused(start_node, headers):
    # A request whose length two parsers could read differently is how requests get smuggled.
    client = await start_node(WORKER_COUNT="0")
    status, _, _ = await send_raw(client, post("/api/v1/jobs", b'{"type": "echo"}', *headers))
    assert 400 <= status < 500


async def test_crlf_in_a_value_that_is_stored_never_reaches_a_response_header(start_node):
    client = await start_node(WORKER_COUNT="0")
    sneaky = "order-1\r\nSet-Cookie: injected=1"
    resp = await client.post("/api/v1/jobs", json={"type": "echo", "idempotency_key": sneaky})
    text = await resp.text()
    assert resp.status in (201, 400), text
    assert "Set-Cookie" not in resp.headers
    if resp.status == 201:
        job = json.loads(text)
        assert resp.headers["Location"] == f"/api/v1/jobs/{job['id']}"
        again = await client.get(resp.headers["Location"])
        assert (await again.json())["idempotency_key"] == sneaky and "Set-Cookie" not in again.headers


@pytest.mark.parametrize("path", [
    "/api/v1/jobs/%0D%0ASet-Cookie:%20injected=1",
    "/api/v1/jobs/abc%0ALocation:%20http://evil.example/",
    "/api/v1/election/algorithms/raft%0D%0ASet-Cookie:%20injected=1",
])
async def test_encoded_crlf_in_a_path_is_a_json_error_without_injected_headers(start_node, path):
    client = await start_node(WORKER_COUNT="0")
    status, headers, body = await send_raw(client, get(path))
    assert status in (400, 404)
    assert "set-cookie" not in headers and "location" not in headers
    assert json.loads(body)["error"]["code"] in ("invalid_request", "not_found")


# --- path traversal -----------------------------------------------------------------------------

TRAVERSALS = [
    "/api/v1/jobs/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/v1/jobs/%2e%2e/%2e%2e/openapi.json",
    "/api/v1/jobs/..%5C..%5Cwindows%5Cwin.ini",
    "/api/v1/jobs/%252e%252e%252f%252e%252e%252fetc",
    "/api/v1/jobs/" + "0" * 31 + "%00",
    "/api/v1/jobs/" + UNKNOWN_ID + "%2F..%2F..%2Fstats",
    "/api/v1/jobs/%C0%AE%C0%AE%C0%AF",  # overlong UTF-8 for "../"
    "/api/v1/election/algorithms/..%2F..%2Fjobs",
    "/api/v1/election/algorithms/%2e%2e",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_traversal_in_an_id_or_a_name_stays_a_json_4xx(start_node, path):
    client = await start_node(WORKER_COUNT="0")
    status, headers, body = await send_raw(client, get(path))
    assert status in (400, 404), body
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] in ("invalid_request", "not_found")
    assert b"root:" not in body and b"Traceback" not in body


async def test_dot_segments_cannot_reach_the_peer_route_unsigned(start_node):
    client = await start_node(WORKER_COUNT="0", CLUSTER_SECRET="ZpYTdDk2Z6-JQ5SE52-W1AZtLcuKPOykDCq7zPc4BjQ")
    for path in ("/api/v1/../.." + ELECTION_PATH, "/api/v1/%2e%2e/%2e%2e" + ELECTION_PATH, "//internal/v1/election"):
        status, _, body = await send_raw(client, post(path, b"{}", b"Content-Length: 2"))
        assert status in (401, 404), (path, body)


# --- the rate limit cannot be dodged ------------------------------------------------------------

async def test_forwarded_headers_do_not_make_a_new_client(start_node):
    client = await start_node(WORKER_COUNT="0", RATE_LIMIT="60", RATE_LIMIT_BURST="1")
    assert (await client.get("/api/v1/leader")).status == 200
    for spoof in ({"X-Forwarded-For": "203.0.113.7"}, {"X-Real-IP": "203.0.113.8"},
                  {"Forwarded": "for=203.0.113.9"}):
        assert (await client.get("/api/v1/leader", headers=spoof)).status == 429


@pytest.mark.parametrize("path", ["/health/../api/v1/leader", "/internal/../api/v1/leader",
                                  "/internal/%2e%2e/api/v1/leader", "/health%2F..%2Fapi/v1/leader"])
async def test_exempt_path_prefixes_cannot_smuggle_a_limited_request(start_node, path):
    client = await start_node(WORKER_COUNT="0", RATE_LIMIT="60", RATE_LIMIT_BURST="1")
    assert (await client.get("/api/v1/leader")).status == 200
    status, headers, _ = await send_raw(client, get(path))
    # Either it reaches /api/v1/leader and is limited, or it reaches nothing at all.
    # The limiter and the router read the same decoded path, so an exempt prefix reaches only
    # the routes under it (none here: 404), and anything else is limited (429).
    assert status in (404, 429), (path, status)
