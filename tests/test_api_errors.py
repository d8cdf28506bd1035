"""Every kind of bad input gets a 4xx JSON error that says which field is wrong and why.

One real node (real Redis, real SecantusDB, no workers) serves the whole module:
none of these requests changes anything another test reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from jobnode.api.appkeys import SETTINGS
from jobnode.core.submission import MAX_PAYLOAD_DEPTH
from tests.harness import make_settings, running_node

BATCH_LIMIT = 5
UNKNOWN_ID = "0" * 32
ABSENT = object()  # a field left out of the body


@pytest.fixture(scope="module")
async def client(redis_server, mongo_server, mongo_client) -> AsyncIterator[TestClient]:
    suffix = uuid.uuid4().hex[:8]
    prefix, db_name = f"t_api_errors_{suffix}", f"t_api_errors_{suffix}"
    settings = make_settings(
        redis_server.url, mongo_server.url, prefix, db_name, WORKER_COUNT="0", MAX_BATCH_SIZE=str(BATCH_LIMIT)
    )
    async with running_node(settings) as node:
        yield node
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            await redis.delete(key)
    finally:
        await redis.aclose()


async def error_of(resp, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """The response's error object, after checking it is the JSON error `status`/`code` naming `field`."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.status != 500 and "Traceback" not in text
    assert resp.content_type == "application/json", text
    error = json.loads(text)["error"]
    assert error["code"] == code, text
    assert isinstance(error["message"], str) and error["message"], text
    if field is not None:
        assert error["details"]["field"] == field, text
    return error


async def post_raw(client: TestClient, path: str, data: bytes, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    skip = () if content_type else ("Content-Type",)
    return await client.post(path, data=data, headers=headers, skip_auto_headers=skip)


async def raw_http(client: TestClient, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes no HTTP client library would produce; return the status and the body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


# --- the body is not a JSON object -------------------------------------------------------------

NOT_A_JOB_BODIES = {
    "malformed": (b'{"type": "echo",', "not valid JSON"),
    "empty": (b"", "empty"),
    "array": (b'[{"type": "echo"}]', "JSON object"),
    "string": (b'"echo"', "JSON object"),
    "number": (b"42", "JSON object"),
    "null": (b"null", "JSON object"),
    "invalid_utf8": (b'{"type": "echo", "payload": {"k": "\xff\xfe"}}', "not valid JSON"),
    "lone_surrogate": (b'{"type": "echo", "payload": {"k": "\\ud800"}}', "not valid JSON"),
    "nan_literal": (b'{"type": "echo", "timeout_seconds": NaN}', "not valid JSON"),
    "deep_arrays": (b"[" * 100_000, "not valid JSON"),
    "deep_objects": (b'{"a":' * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize("raw,hint", NOT_A_JOB_BODIES.values(), ids=NOT_A_JOB_BODIES.keys())
async def test_a_body_that_is_not_a_json_object_is_refused(client, raw, hint):
    error = await error_of(await post_raw(client, "/api/v1/jobs", raw), 400, "invalid_request", "body")
    assert hint in error["message"]


# --- one field is wrong --------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"k": value}
    return value


BAD_FIELDS = {
    "type_missing": ({"type": ABSENT}, "type", "required"),
    "type_null": ({"type": None}, "type", "required"),
    "type_number": ({"type": 5}, "type", "string"),
    "type_empty": ({"type": ""}, "type", "string"),
    "type_too_long": ({"type": "e" * 101}, "type", "100"),
    "priority_float": ({"priority": 5.5}, "priority", "integer"),
    "priority_whole_float": ({"priority": 5.0}, "priority", "integer"),
    "priority_bool": ({"priority": True}, "priority", "integer"),
    "priority_word": ({"priority": "urgent"}, "priority", "low, normal, high"),
    "priority_null": ({"priority": None}, "priority", "integer"),
    "priority_above": ({"priority": 11}, "priority", "0 to 10"),
    "priority_below": ({"priority": -1}, "priority", "0 to 10"),
    "payload_list": ({"payload": [1, 2]}, "payload", "object"),
    "payload_string": ({"payload": "hello"}, "payload", "object"),
    "payload_null": ({"payload": None}, "payload", "object"),
    "payload_too_deep": ({"payload": nested(500)}, "payload", "deep"),
    "payload_int_over_64_bits": ({"payload": {"n": 2**64 - 1}}, "payload.n", "64-bit"),
    "payload_key_with_nul": ({"payload": {"a\u0000b": 1}}, "payload", "NUL"),
    "max_retries_negative": ({"max_retries": -1}, "max_retries", "0 to 100"),
    "max_retries_above": ({"max_retries": 101}, "max_retries", "0 to 100"),
    "max_retries_string": ({"max_retries": "3"}, "max_retries", "integer"),
    "max_retries_bool": ({"max_retries": True}, "max_retries", "integer"),
    "timeout_zero": ({"timeout_seconds": 0}, "timeout_seconds", "more than 0"),
    "timeout_negative": ({"timeout_seconds": -1}, "timeout_seconds", "more than 0"),
    "timeout_string": ({"timeout_seconds": "x"}, "timeout_seconds", "number"),
    "timeout_bool": ({"timeout_seconds": True}, "timeout_seconds", "number"),
    "timeout_over_a_week": ({"timeout_seconds": 7 * 24 * 3600 + 1}, "timeout_seconds", "604800"),
    "scheduled_word": ({"scheduled_at": "tomorrow"}, "scheduled_at", "ISO-8601"),
    "scheduled_number": ({"scheduled_at": 123}, "scheduled_at", "ISO-8601"),
    "scheduled_bad_date": ({"scheduled_at": "2026-13-45"}, "scheduled_at", "ISO-8601"),
    "scheduled_year_1": ({"scheduled_at": "0001-01-01T00:00:00Z"}, "scheduled_at", "1970"),
    "scheduled_past_9999_in_utc": ({"scheduled_at": "9999-12-31T23:59:59-12:00"}, "scheduled_at", "9999"),
    "scheduled_before_1970_in_utc": ({"scheduled_at": "1970-01-01T00:00:00+14:00"}, "scheduled_at", "1970"),
    "unknown_field": ({"colour": "red"}, "colour", "unknown field"),
    "idempotency_key_empty": ({"idempotency_key": ""}, "idempotency_key", "non-empty"),
    "idempotency_key_too_long": ({"idempotency_key": "k" * 201}, "idempotency_key", "200"),
    "idempotency_key_number": ({"idempotency_key": 7}, "idempotency_key", "string"),
}


@pytest.mark.parametrize("fields,field,hint", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
async def test_a_bad_field_is_named_with_the_reason(client, fields, field, hint):
    body = {key: value for key, value in {"type": "echo", **fields}.items() if value is not ABSENT}
    error = await error_of(await client.post("/api/v1/jobs", json=body), 400, "invalid_request", field)
    assert hint in error["message"], error


async def test_a_number_too_big_for_a_double_names_its_field(client):
    raw = b'{"type": "echo", "timeout_seconds": 1e309}'
    error = await error_of(await post_raw(client, "/api/v1/jobs", raw), 400, "invalid_request", "timeout_seconds")
    assert "number" in error["message"]


async def test_a_huge_number_does_not_let_a_lone_surrogate_through(client):
    raw = b'{"type": "echo", "timeout_seconds": 1e309, "payload": {"k": "\\ud800"}}'
    error = await error_of(await post_raw(client, "/api/v1/jobs", raw), 400, "invalid_request", "body")
    assert "not valid JSON" in error["message"]


async def test_an_infinite_number_in_the_payload_is_refused(client):
    raw = b'{"type": "echo", "payload": {"big": -1e400}}'
    error = await error_of(await post_raw(client, "/api/v1/jobs", raw), 400, "invalid_request", "payload.big")
    assert "finite" in error["message"]


async def test_an_unknown_type_lists_the_registered_types(client):
    resp = await client.post("/api/v1/jobs", json={"type": "teleport"})
    error = await error_of(resp, 400, "invalid_request", "type")
    registered = error["details"]["registered_types"]
    assert {"echo", "sleep", "http", "email"} <= set(registered)
    assert "teleport" in error["message"] and "echo" in error["message"]


async def test_unknown_fields_are_all_listed(client):
    resp = await client.post("/api/v1/jobs", json={"type": "echo", "zeta": 1, "alpha": 2})
    error = await error_of(resp, 400, "invalid_request", "alpha")
    assert error["details"]["unknown_fields"] == ["alpha", "zeta"]
    assert "priority" in error["details"]["allowed_fields"]


@pytest.mark.parametrize("header,hint", [("", "non-empty"), ("k" * 201, "200")], ids=["empty", "too_long"])
async def test_a_bad_idempotency_key_header_is_named(client, header, hint):
    resp = await client.post("/api/v1/jobs", json={"type": "echo"}, headers={"Idempotency-Key": header})
    error = await error_of(resp, 400, "invalid_request", "Idempotency-Key")
    assert hint in error["message"]


async def test_an_idempotency_key_header_that_is_not_utf8_is_refused(client):
    head = b"POST /api/v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nIdempotency-Key: k\xff\r\n"
    status, body = await raw_http(client, head, b'{"type": "echo"}')
    assert status == 400, body
    assert json.loads(body)["error"]["details"]["field"] == "Idempotency-Key"


# --- size and media type ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/api/v1/jobs/batch"])
async def test_a_body_over_the_limit_is_413(client, path):
    limit = client.server.app[SETTINGS].max_body_bytes
    raw = b'{"type": "echo", "payload": {"s": "' + b"x" * limit + b'"}}'
    error = await error_of(await post_raw(client, path, raw), 413, "payload_too_large")
    assert str(limit) in error["message"]


CONTENT_TYPES = {
    "text_plain": ("text/plain", "got 'text/plain'"),
    "form": ("application/x-www-form-urlencoded", "got 'application/x-www-form-urlencoded'"),
    "multipart": ("multipart/form-data; boundary=x", "got 'multipart/form-data'"),
    "missing": (None, "no Content-Type header"),
}


@pytest.mark.parametrize("content_type,hint", CONTENT_TYPES.values(), ids=CONTENT_TYPES.keys())
async def test_a_body_that_does_not_say_it_is_json_is_415(client, content_type, hint):
    resp = await post_raw(client, "/api/v1/jobs", b'{"type": "echo"}', content_type)
    error = await error_of(resp, 415, "unsupported_media_type", "Content-Type")
    assert "application/json" in error["message"] and hint in error["message"], error


async def test_json_with_a_charset_is_accepted(client):
    resp = await post_raw(client, "/api/v1/jobs", b'{"type": "echo"}', "application/json; charset=utf-8")
    assert resp.status == 201, await resp.text()


# --- batches ------------------------------------------------------------------------------------

GOOD = {"type": "echo"}
BAD_BATCHES = {
    "jobs_not_a_list": ({"jobs": "echo"}, "jobs", "array"),
    "jobs_an_object": ({"jobs": {"type": "echo"}}, "jobs", "array"),
    "jobs_missing": ({}, "jobs", "array"),
    "jobs_empty": ({"jobs": []}, "jobs", "non-empty"),
    "body_a_string": ("echo", "jobs", "array"),
    "too_many": ({"jobs": [GOOD] * (BATCH_LIMIT + 1)}, "jobs", f"at most {BATCH_LIMIT}"),
    "item_not_an_object": ({"jobs": [GOOD, 7]}, "jobs[1]", "JSON object"),
    "item_bad_priority": ({"jobs": [GOOD, GOOD, GOOD, {"type": "echo", "priority": "urgent"}]},
                          "jobs[3].priority", "low, normal, high"),
    "item_unknown_type": ({"jobs": [{"type": "nope"}]}, "jobs[0].type", "registered types"),
    "duplicate_keys": ({"jobs": [{"type": "echo", "idempotency_key": "a"}] * 2}, "jobs", "same idempotency_key"),
}


@pytest.mark.parametrize("body,field,hint", BAD_BATCHES.values(), ids=BAD_BATCHES.keys())
async def test_a_bad_batch_names_the_field(client, body, field, hint):
    error = await error_of(await client.post("/api/v1/jobs/batch", json=body), 400, "invalid_request", field)
    assert hint in error["message"], error


async def test_a_batch_with_an_unknown_top_level_field_is_refused(client):
    resp = await client.post("/api/v1/jobs/batch", json={"jobs": [GOOD], "priority": 9})
    await error_of(resp, 400, "invalid_request", "priority")


async def test_a_refused_batch_creates_no_job(client):
    before = await (await client.get("/api/v1/jobs", params={"type": "sleep"})).json()
    body = {"jobs": [{"type": "sleep"}, {"type": "sleep", "max_retries": "3"}]}
    await error_of(await client.post("/api/v1/jobs/batch", json=body), 400, "invalid_request", "jobs[1].max_retries")
    after = await (await client.get("/api/v1/jobs", params={"type": "sleep"})).json()
    assert after["count"] == before["count"]


# --- listing ------------------------------------------------------------------------------------


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_QUERIES = {
    "status_bogus": ({"status": "bogus"}, "status", "pending"),
    "status_not_utf8": ({"status": "%FF"}, "status", "pending"),
    "type_too_long": ({"type": "t" * 101}, "type", "100"),
    "limit_zero": ({"limit": "0"}, "limit", "1 to 1000"),
    "limit_above": ({"limit": "1001"}, "limit", "1 to 1000"),
    "limit_word": ({"limit": "abc"}, "limit", "integer"),
    "limit_float": ({"limit": "1.5"}, "limit", "integer"),
    "cursor_garbage": ({"cursor": "garbage!!"}, "cursor", "cursor"),
    "cursor_not_ascii": ({"cursor": "é"}, "cursor", "cursor"),
    "cursor_wrong_shape": ({"cursor": cursor_of({"a": 1})}, "cursor", "cursor"),
    "cursor_far_future": ({"cursor": cursor_of([2**62, UNKNOWN_ID])}, "cursor", "cursor"),
    "cursor_far_past": ({"cursor": cursor_of([-(2**62), UNKNOWN_ID])}, "cursor", "cursor"),
}


@pytest.mark.parametrize("params,field,hint", BAD_QUERIES.values(), ids=BAD_QUERIES.keys())
async def test_a_bad_list_query_names_the_parameter(client, params, field, hint):
    error = await error_of(await client.get("/api/v1/jobs", params=params), 400, "invalid_request", field)
    assert hint in error["message"], error


async def test_a_type_filter_that_is_not_utf8_is_refused_or_matches_nothing(client):
    resp = await client.get("/api/v1/jobs?type=%FF%FE")
    text = await resp.text()
    assert resp.status in (200, 400), text
    if resp.status == 200:
        assert json.loads(text)["count"] == 0


# --- job ids and routes -------------------------------------------------------------------------

BAD_IDS = {
    "not_hex": "not-hex",
    "upper_case": "A" * 32,
    "too_short": "0" * 31,
    "not_utf8": "%FF" * 32,
}


@pytest.mark.parametrize("job_id", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("method,suffix", [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("POST", "/retry")])
async def test_a_malformed_job_id_is_400(client, method, suffix, job_id):
    resp = await client.request(method, f"/api/v1/jobs/{job_id}{suffix}")
    error = await error_of(resp, 400, "invalid_request", "id")
    assert "32" in error["message"]


async def test_an_encoded_path_traversal_is_not_a_job(client):
    resp = await client.get("/api/v1/jobs/..%2F..%2Fetc")
    text = await resp.text()
    assert resp.status in (400, 404), text
    await error_of(resp, resp.status, "invalid_request" if resp.status == 400 else "not_found")


@pytest.mark.parametrize("method,suffix", [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("POST", "/retry")])
async def test_an_unknown_job_is_404(client, method, suffix):
    resp = await client.request(method, f"/api/v1/jobs/{UNKNOWN_ID}{suffix}")
    error = await error_of(resp, 404, "not_found")
    assert UNKNOWN_ID in error["message"]


@pytest.mark.parametrize("path", ["/api/v1/nope", "/api/v2/jobs", "/", "/api/v1/jobs/%s/explode" % UNKNOWN_ID])
async def test_an_unknown_route_is_404_json(client, path):
    error = await error_of(await client.get(path), 404, "not_found")
    assert "no route" in error["message"]


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("PUT", "/api/v1/jobs", {"GET", "POST"}),
        ("DELETE", "/api/v1/jobs", {"GET", "POST"}),
        ("PATCH", f"/api/v1/jobs/{UNKNOWN_ID}", {"GET", "DELETE"}),
        ("GET", f"/api/v1/jobs/{UNKNOWN_ID}/cancel", {"POST"}),
        ("POST", "/api/v1/stats", {"GET"}),
    ],
)
async def test_a_wrong_method_is_405_json_with_allow(client, method, path, allowed):
    resp = await client.request(method, path)
    error = await error_of(resp, 405, "method_not_allowed")
    assert set(resp.headers["Allow"].replace(" ", "").split(",")) >= allowed
    assert all(m in error["message"] for m in allowed), error


# --- what is just inside the limits is accepted -------------------------------------------------


async def test_payloads_at_the_edge_of_what_can_be_stored_are_accepted_and_read_back(client):
    payload = {
        "deep": nested(MAX_PAYLOAD_DEPTH - 2),  # payload itself is level 1, "deep" level 2
        "big": 2**63 - 1,
        "small": -(2**63),
        "$dollar": 1,
        "dotted.key": 2,
        "": "empty key",
        "nul_in_value": "a\u0000b",
    }
    resp = await client.post("/api/v1/jobs", json={"type": "echo", "payload": payload})
    assert resp.status == 201, await resp.text()
    job_id = (await resp.json())["id"]
    resp = await client.get(f"/api/v1/jobs/{job_id}")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["payload"] == payload


async def test_a_too_deep_payload_in_a_batch_names_the_item(client):
    body = {"jobs": [GOOD, {"type": "echo", "payload": nested(MAX_PAYLOAD_DEPTH)}]}
    error = await error_of(await client.post("/api/v1/jobs/batch", json=body), 400, "invalid_request",
                           "jobs[1].payload")
    assert str(MAX_PAYLOAD_DEPTH) in error["message"]
