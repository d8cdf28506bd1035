"""jobnode.client against a small local HTTP peer that answers the way the API contract says.

The real node is tested elsewhere; here the peer lets a test decide exactly what the server
answers (a 503, a Retry-After, a slow reply) and count what the client really sent.
tests/test_cli.py uses the same peer.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import itertools
import json
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jobnode.client import (
    ApiError,
    AsyncClient,
    AuthError,
    BadRequest,
    Client,
    ConflictError,
    ConnectionFailed,
    NotFoundError,
    PermissionDenied,
    RateLimitedError,
    ServiceUnavailable,
    WaitTimeout,
)

KNOWN_TYPES = ("echo", "fail", "never")
USERS = {"alice": "wonderland-password"}
TOKEN = "token-for-alice"


@dataclass
class Fault:
    """One canned answer for the next request to (method, path), given instead of the real one."""

    method: str
    path: str
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    method: str
    path: str
    raw_path: str
    headers: dict[str, str]
    body: Any


def api_error(status: int, code: str, message: str, details: Any = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, "details": details}}, status=status)


class ContractServer:
    """An in-memory stand-in for one node's HTTP API, served from its own thread and event loop.

    Its own loop lets synchronous tests (the CLI's main()) and asynchronous ones talk to it alike.
    Jobs of type `echo` complete, `fail` fail, `never` stay pending; a job's payload may say
    after how many reads it finishes (`{"reads": 3}`, default 1)."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.jobs: dict[str, dict] = {}  # insertion order = creation order
        self.keys: dict[str, str] = {}
        self.reads_left: dict[str, int] = {}
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.auth_required = False
        self.nodes_route = True
        self.healthy = True
        self._clock = itertools.count()
        self._lock = threading.Lock()

    # ---- control from tests ----

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def fail_next(self, method: str, path: str, status: int, *, times: int = 1, **options: Any) -> None:
        with self._lock:
            self.faults.extend(Fault(method, path, status, **options) for _ in range(times))

    def count(self, method: str, path: str) -> int:
        return sum(1 for s in self.seen if s.method == method and s.path == path)

    def add_job(self, job_type: str = "echo", *, job_id: str | None = None, status: str = "pending", **extra: Any):
        job = self._new_job({"type": job_type, **extra}, job_id=job_id)
        job["status"] = status
        return job

    # ---- lifecycle ----

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_post("/api/v1/jobs", self._submit)
        r.add_post("/api/v1/jobs/batch", self._submit_batch)
        r.add_get("/api/v1/jobs", self._list)
        r.add_get("/api/v1/jobs/{id}", self._get)
        r.add_post("/api/v1/jobs/{id}/cancel", self._cancel)
        r.add_post("/api/v1/jobs/{id}/retry", self._retry)
        r.add_delete("/api/v1/jobs/{id}", self._delete)
        r.add_get("/api/v1/stats", self._stats)
        r.add_get("/api/v1/nodes", self._nodes)
        r.add_get("/health", self._health)
        r.add_post("/auth/login", self._login)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        # Port 0: the kernel picks a free port, so parallel runs never collide.
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # ---- request handling ----

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        body = json.loads(raw) if raw else None
        self.seen.append(Seen(request.method, request.path, request.raw_path, dict(request.headers), body))
        with self._lock:
            fault = next((f for f in self.faults if (f.method, f.path) == (request.method, request.path)), None)
            if fault:
                self.faults.remove(fault)
        if fault:
            await asyncio.sleep(fault.delay_s)
            if isinstance(fault.body, (bytes, str)):
                return web.Response(status=fault.status, body=fault.body, headers=fault.headers)
            error = fault.body or {"code": f"code_{fault.status}", "message": f"canned {fault.status}"}
            return web.json_response({"error": error}, status=fault.status, headers=fault.headers)
        public = request.path in ("/health", "/auth/login")
        if self.auth_required and not public and request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return api_error(401, "unauthorized", "missing or invalid bearer token")
        return await handler(request)

    def _new_job(self, spec: dict, job_id: str | None = None) -> dict:
        now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=next(self._clock))
        job = {
            "id": job_id or uuid.uuid4().hex,
            "type": spec["type"],
            "status": "pending",
            "priority": spec.get("priority", 5),
            "payload": spec.get("payload", {}),
            "attempts": 0,
            "idempotency_key": spec.get("idempotency_key"),
            "scheduled_at": spec.get("scheduled_at"),
            "created_at": now.isoformat().replace("+00:00", "Z"),
        }
        self.jobs[job["id"]] = job
        self.reads_left[job["id"]] = job["payload"].get("reads", 1)
        if job["idempotency_key"]:
            self.keys[job["idempotency_key"]] = job["id"]
        return job

    def _check_spec(self, spec: Any, prefix: str = "") -> web.Response | None:
        if not isinstance(spec, dict) or spec.get("type") not in KNOWN_TYPES:
            return api_error(
                400,
                "validation_error",
                f"{prefix}type: unknown job type {spec.get('type')!r}",
                {"field": f"{prefix}type", "registered_types": list(KNOWN_TYPES)},
            )
        return None

    async def _submit(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if (refused := self._check_spec(spec)) is not None:
            return refused
        if spec.get("idempotency_key") in self.keys:
            return web.json_response(self.jobs[self.keys[spec["idempotency_key"]]], status=200)
        job = self._new_job(spec)
        return web.json_response(job, status=201, headers={"Location": f"/api/v1/jobs/{job['id']}"})

    async def _submit_batch(self, request: web.Request) -> web.Response:
        specs = (await request.json())["jobs"]
        for i, spec in enumerate(specs):
            if (refused := self._check_spec(spec, f"jobs[{i}].")) is not None:
                return refused
        jobs = [self.jobs[self.keys[s["idempotency_key"]]] if s.get("idempotency_key") in self.keys
                else self._new_job(s) for s in specs]
        return web.json_response({"jobs": jobs, "count": len(jobs)}, status=201)

    def _job_or_404(self, request: web.Request) -> dict:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            raise web.HTTPNotFound(
                text=json.dumps({"error": {"code": "not_found", "message": "no such job", "details": None}}),
                content_type="application/json",
            )
        return job

    async def _get(self, request: web.Request) -> web.Response:
        job = self._job_or_404(request)
        if job["status"] == "pending" and job["type"] != "never":
            self.reads_left[job["id"]] -= 1
            if self.reads_left[job["id"]] <= 0:
                job["status"] = "completed" if job["type"] == "echo" else "failed"
                job["attempts"] = 1
        return web.json_response(job)

    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        jobs = [j for j in reversed(self.jobs.values())
                if q.get("status", j["status"]) == j["status"] and q.get("type", j["type"]) == j["type"]]
        start, limit = int(q.get("cursor", 0)), int(q.get("limit", 50))
        page = jobs[start : start + limit]
        more = start + limit < len(jobs)
        next_cursor = str(start + limit) if more else None
        return web.json_response({"jobs": page, "count": len(page), "next_cursor": next_cursor})

    async def _cancel(self, request: web.Request) -> web.Response:
        job = self._job_or_404(request)
        if job["status"] in ("completed", "failed"):
            return api_error(409, "conflict", f"job is already {job['status']}", {"status": job["status"]})
        job["status"] = "cancelled"
        return web.json_response(job)

    async def _retry(self, request: web.Request) -> web.Response:
        job = self._job_or_404(request)
        if job["status"] != "failed":
            return api_error(409, "conflict", f"only failed jobs can be retried; this one is {job['status']}")
        job["status"] = "pending"
        return web.json_response(job)

    async def _delete(self, request: web.Request) -> web.Response:
        job = self._job_or_404(request)
        del self.jobs[job["id"]]
        return web.json_response({"id": job["id"], "deleted": True})

    async def _stats(self, request: web.Request) -> web.Response:
        counts = {s: 0 for s in ("pending", "assigned", "running", "retrying", "completed", "failed", "cancelled")}
        for job in self.jobs.values():
            counts[job["status"]] += 1
        return web.json_response({
            "jobs": counts | {"total": len(self.jobs)},
            "queue": {"pending": counts["pending"], "processing": 0, "completed": counts["completed"],
                      "failed": counts["failed"], "delayed": 0},
            "node": {"id": "node-a", "is_leader": True, "strategy": "round_robin", "worker_count": 10},
            "leader": {"leader_id": "node-a", "is_leader": True, "term": 7, "algorithm": "bully"},
            "node_count": 2,
            "throughput": {"completed_per_s": 12.5},
        })

    async def _nodes(self, request: web.Request) -> web.Response:
        if not self.nodes_route:
            return api_error(404, "not_found", "no such route")
        nodes = [
            {"id": "node-a", "address": "http://127.0.0.1:8080", "is_leader": True, "last_seen": "2026-01-01T00:00:00Z",
             "worker_count": 10, "term": 7, "role": "leader", "health": "ok"},
            {"id": "node-bb", "address": "http://127.0.0.1:18081", "is_leader": False,
             "last_seen": "2026-01-01T00:00:01Z", "worker_count": 4, "term": 7, "role": "follower", "health": "ok"},
        ]
        return web.json_response({"nodes": nodes, "count": len(nodes)})

    async def _health(self, request: web.Request) -> web.Response:
        status = "ok" if self.healthy else "unavailable"
        body = {"status": status, "node_id": "node-a", "checks": {"redis": {"ok": self.healthy}}}
        return web.json_response(body, status=200 if self.healthy else 503)

    async def _login(self, request: web.Request) -> web.Response:
        creds = await request.json()
        if USERS.get(creds.get("username")) != creds.get("password"):
            return api_error(401, "unauthorized", "wrong username or password")
        return web.json_response({"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600, "role": "admin"})


@pytest.fixture
def server():
    peer = ContractServer()
    peer.start()
    yield peer
    peer.stop()


def closed_port() -> int:
    """A port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PauseRecordingClient(AsyncClient):
    """An AsyncClient that notes every pause it takes before a retry, then takes it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pauses: list[float] = []

    async def _pause(self, delay_s: float) -> None:
        self.pauses.append(delay_s)
        await super()._pause(delay_s)


# ---- basic routes ---------------------------------------------------------------------------


async def test_submit_get_and_list_every_page(server):
    async with AsyncClient(server.url) as client:
        submitted = [await client.submit("echo", {"n": i}, priority=7) for i in range(5)]
        assert submitted[0]["priority"] == 7 and submitted[0]["payload"] == {"n": 0}
        assert (await client.get(submitted[2]["id"]))["payload"] == {"n": 2}
        page = await client.list(limit=2)
        assert page["count"] == 2 and page["next_cursor"]
        every = [job["id"] async for job in client.iter_jobs(limit=2)]
    assert every == [job["id"] for job in reversed(submitted)]  # newest first, all pages


async def test_submit_sends_scheduled_at_as_utc_iso_and_skips_unset_fields(server):
    async with AsyncClient(server.url) as client:
        await client.submit("echo", scheduled_at=dt.datetime(2030, 5, 6, 7, 8, 9))
    body = server.seen[-1].body
    assert body == {"type": "echo", "scheduled_at": "2030-05-06T07:08:09Z"}


async def test_ids_are_quoted_into_one_path_segment(server):
    odd_ids = ["a/b c?#", "..", "%2F", "ü"]
    for job_id in odd_ids:
        server.add_job("never", job_id=job_id)
    async with AsyncClient(server.url) as client:
        fetched = [(await client.get(job_id))["id"] for job_id in odd_ids]
        await client.cancel("a/b c?#")
    assert fetched == odd_ids
    assert server.seen[0].raw_path == "/api/v1/jobs/a%2Fb%20c%3F%23"
    assert server.jobs["a/b c?#"]["status"] == "cancelled"


async def test_health_returns_the_body_when_unhealthy_too(server):
    async with AsyncClient(server.url) as client:
        assert (await client.health())["status"] == "ok"
        server.healthy = False
        body = await client.health()
    assert body["status"] == "unavailable" and body["checks"]["redis"]["ok"] is False


async def test_login_keeps_the_token_for_later_requests(server):
    server.auth_required = True
    async with AsyncClient(server.url) as client:
        with pytest.raises(AuthError):
            await client.stats()
        with pytest.raises(AuthError) as refused:
            await client.login("alice", "not-her-password")
        assert refused.value.code == "unauthorized"
        answer = await client.login("alice", USERS["alice"])
        stats = await client.stats()
    assert answer["role"] == "admin" and client.token == TOKEN
    assert stats["node"]["id"] == "node-a"
    assert server.seen[-1].headers["Authorization"] == f"Bearer {TOKEN}"


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, BadRequest),
        (401, AuthError),
        (403, PermissionDenied),
        (404, NotFoundError),
        (409, ConflictError),
        (429, RateLimitedError),
        (503, ServiceUnavailable),
        (500, ApiError),
    ],
)
async def test_error_answers_become_typed_errors_carrying_the_body(server, status, error_type):
    details = {"field": "x", "why": status}
    body = {"code": "some_code", "message": "it broke", "details": details}
    server.fail_next("GET", "/api/v1/stats", status, body=body)
    async with AsyncClient(server.url, max_attempts=1) as client:
        with pytest.raises(ApiError) as raised:
            await client.stats()
    assert type(raised.value) is error_type
    error = raised.value
    assert (error.status, error.code, error.message, error.details) == (status, "some_code", "it broke", details)


async def test_an_error_page_that_is_not_json_still_becomes_an_api_error(server):
    server.fail_next("GET", "/api/v1/stats", 502, body=b"<html>Bad Gateway</html>", times=3)
    async with AsyncClient(server.url) as client:
        with pytest.raises(ApiError) as raised:
            await client.stats()
    assert raised.value.status == 502 and raised.value.code == "http_502"
    assert "Bad Gateway" in raised.value.message


async def test_unknown_type_is_a_bad_request_naming_the_registered_types(server):
    async with AsyncClient(server.url) as client:
        with pytest.raises(BadRequest) as raised:
            await client.submit("nope")
    assert raised.value.details["registered_types"] == list(KNOWN_TYPES)
    assert server.count("POST", "/api/v1/jobs") == 1


async def test_connection_refused_is_connection_failed():
    async with AsyncClient(f"http://127.0.0.1:{closed_port()}", max_attempts=2) as client:
        with pytest.raises(ConnectionFailed) as raised:
            await client.stats()
    assert raised.value.status is None
    assert "Connection refused" in raised.value.message


async def test_no_answer_in_time_is_connection_failed(server):
    server.fail_next("POST", "/api/v1/jobs", 201, delay_s=2.0)
    async with AsyncClient(server.url, timeout_s=0.2) as client:
        with pytest.raises(ConnectionFailed, match="no answer within 0.2s"):
            await client.submit("echo")


def test_bad_constructor_arguments_are_refused_up_front(tmp_path):
    with pytest.raises(ValueError, match="http"):
        AsyncClient("127.0.0.1:8080")
    with pytest.raises(ValueError, match="ca_file"):
        AsyncClient("https://127.0.0.1:8080", ca_file=str(tmp_path / "missing.pem"))


# ---- retry rules ----------------------------------------------------------------------------


async def test_a_submit_without_key_is_sent_exactly_once(server):
    server.fail_next("POST", "/api/v1/jobs", 503)
    async with AsyncClient(server.url) as client:
        with pytest.raises(ServiceUnavailable):
            await client.submit("echo")
    assert server.count("POST", "/api/v1/jobs") == 1


async def test_a_submit_with_key_is_retried_and_creates_one_job(server):
    server.fail_next("POST", "/api/v1/jobs", 503, times=2)
    async with AsyncClient(server.url) as client:
        job = await client.submit("echo", idempotency_key="order-1")
        again = await client.submit("echo", idempotency_key="order-1")
    assert server.count("POST", "/api/v1/jobs") == 4
    assert job["id"] == again["id"] and list(server.jobs) == [job["id"]]


async def test_a_batch_is_retried_only_if_every_job_has_a_key(server):
    keyed = [{"type": "echo", "idempotency_key": f"k{i}"} for i in range(3)]
    async with AsyncClient(server.url) as client:
        server.fail_next("POST", "/api/v1/jobs/batch", 503)
        jobs = await client.submit_batch(keyed)
        assert server.count("POST", "/api/v1/jobs/batch") == 2 and len(jobs) == 3
        server.fail_next("POST", "/api/v1/jobs/batch", 503)
        with pytest.raises(ServiceUnavailable):
            await client.submit_batch(keyed + [{"type": "echo"}])
    assert server.count("POST", "/api/v1/jobs/batch") == 3


async def test_reads_are_retried_up_to_max_attempts(server):
    server.fail_next("GET", "/api/v1/stats", 503, times=5)
    async with PauseRecordingClient(server.url, max_attempts=3) as client:
        with pytest.raises(ServiceUnavailable):
            await client.stats()
    assert server.count("GET", "/api/v1/stats") == 3
    assert len(client.pauses) == 2 and client.pauses[0] < client.pauses[1]  # backing off


async def test_cancel_is_retried_but_an_admin_retry_is_not(server):
    job = server.add_job("fail", status="failed")
    pending = server.add_job("never")
    async with AsyncClient(server.url) as client:
        server.fail_next("POST", f"/api/v1/jobs/{pending['id']}/cancel", 503)
        assert (await client.cancel(pending["id"]))["status"] == "cancelled"
        server.fail_next("POST", f"/api/v1/jobs/{job['id']}/retry", 503)
        with pytest.raises(ServiceUnavailable):
            await client.retry(job["id"])
    assert server.count("POST", f"/api/v1/jobs/{pending['id']}/cancel") == 2
    assert server.count("POST", f"/api/v1/jobs/{job['id']}/retry") == 1


async def test_client_errors_other_than_429_are_never_retried(server):
    done = server.add_job(status="completed")
    async with AsyncClient(server.url) as client:
        with pytest.raises(ConflictError):
            await client.cancel(done["id"])
        with pytest.raises(NotFoundError):
            await client.get("missing")
    assert server.count("POST", f"/api/v1/jobs/{done['id']}/cancel") == 1
    assert server.count("GET", "/api/v1/jobs/missing") == 1


async def test_retry_after_is_honoured(server):
    server.fail_next("GET", "/api/v1/stats", 429, headers={"Retry-After": "1"})
    async with PauseRecordingClient(server.url) as client:
        stats = await client.stats()
    assert stats["node"]["id"] == "node-a"
    assert client.pauses == [1.0]
    assert server.count("GET", "/api/v1/stats") == 2


async def test_a_retry_after_too_far_away_is_handed_to_the_caller(server):
    server.fail_next("GET", "/api/v1/stats", 429, headers={"Retry-After": "120"})
    async with PauseRecordingClient(server.url) as client:
        with pytest.raises(RateLimitedError) as raised:
            await client.stats()
    assert raised.value.retry_after_s == 120.0
    assert client.pauses == [] and server.count("GET", "/api/v1/stats") == 1


# ---- waiting --------------------------------------------------------------------------------


async def test_wait_returns_at_a_terminal_status(server):
    job = server.add_job("echo", payload={"reads": 3})
    async with AsyncClient(server.url) as client:
        done = await client.wait(job["id"], poll_interval_s=0.01)
    assert done["status"] == "completed"
    assert server.count("GET", f"/api/v1/jobs/{job['id']}") == 3


async def test_wait_raises_wait_timeout_for_a_job_that_does_not_finish(server):
    job = server.add_job("never")
    async with AsyncClient(server.url) as client:
        with pytest.raises(WaitTimeout) as raised:
            await client.wait(job["id"], timeout_s=0.2, poll_interval_s=0.02)
    assert raised.value.pending_ids == [job["id"]]
    assert raised.value.jobs[job["id"]]["status"] == "pending"


async def test_wait_many_returns_jobs_in_the_order_asked_and_reports_progress(server):
    jobs = [server.add_job("echo", payload={"reads": 2}), server.add_job("fail"), server.add_job("echo")]
    progress: list[tuple[int, int]] = []
    async with AsyncClient(server.url) as client:
        finished = await client.wait_many(
            [j["id"] for j in jobs], poll_interval_s=0.01, on_progress=lambda d, t: progress.append((d, t))
        )
        stuck = server.add_job("never")
        with pytest.raises(WaitTimeout) as raised:
            await client.wait_many([jobs[0]["id"], stuck["id"]], timeout_s=0.2, poll_interval_s=0.02)
    assert [j["status"] for j in finished] == ["completed", "failed", "completed"]
    assert progress[-1] == (3, 3)
    assert raised.value.pending_ids == [stuck["id"]]


# ---- the blocking wrapper -------------------------------------------------------------------


def test_sync_client_runs_the_same_calls(server):
    with Client(server.url) as client:
        job = client.submit("echo", {"x": 1})
        assert client.wait(job["id"], poll_interval_s=0.01)["status"] == "completed"
        assert [j["id"] for j in client.iter_jobs(limit=1)] == [job["id"]]
        with pytest.raises(NotFoundError):
            client.get("missing")
        client.login("alice", USERS["alice"])
        assert client.token == TOKEN
    client.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        client.stats()


async def test_sync_client_works_inside_a_running_event_loop(server):
    # As in a Jupyter cell: an event loop is running in this thread, yet blocking calls work.
    client = Client(server.url)
    try:
        assert client.stats()["node"]["id"] == "node-a"
        assert client.health()["status"] == "ok"
    finally:
        client.close()


# ---- TLS ------------------------------------------------------------------------------------


def make_ca_and_server_cert(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""

    def name(common_name: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def build(subject: str, public_key: Any, is_ca: bool) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name("test ca"))
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )

    ca = build("test ca", ca_key.public_key(), True).sign(ca_key, hashes.SHA256())
    cert = (
        build("127.0.0.1", key.public_key(), False)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def tls_server(tmp_path):
    ca_file, cert_file, key_file = make_ca_and_server_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    peer = ContractServer(ssl_context=context)
    peer.start()
    yield peer, ca_file
    peer.stop()


async def test_tls_is_verified_against_the_given_ca(tls_server):
    server, ca_file = tls_server
    async with AsyncClient(server.url, ca_file=str(ca_file)) as client:
        assert (await client.health())["status"] == "ok"
    async with AsyncClient(server.url, verify_tls=False) as client:
        assert (await client.health())["status"] == "ok"
    async with AsyncClient(server.url, max_attempts=1) as client:
        with pytest.raises(ConnectionFailed, match="(?i)certificate"):
            await client.health()
