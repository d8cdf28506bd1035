"""A Python client for jobnode's HTTP API: `AsyncClient` (aiohttp) and a blocking `Client` wrapper.

    async with AsyncClient("http://127.0.0.1:8080") as jobs:
        job = await jobs.submit("echo", {"hello": "world"}, idempotency_key="order-42")
        done = await jobs.wait(job["id"])

    with Client("http://127.0.0.1:8080") as jobs:
        print(jobs.stats())

Requests are retried only when repeating them cannot do harm: reads, cancel (the server treats a
second cancel as a no-op), and submissions that carry an idempotency key (the server answers a
repeated key with the job it already has). Everything else is sent exactly once.

Given several nodes (`AsyncClient(["http://a:8080", "http://b:8080"])`, or one string with commas),
the client talks to one at a time and moves to the next when it cannot connect or the node answers
503 (it is stopping, or has lost Redis or MongoDB); it stays on the node that answered. Safe requests
(those above) follow it there and are sent again. Any other request moves to another node only when
the connection was refused or never opened, since then nothing was sent; once a request may have
reached a node, a failure is the caller's to judge (a submission without an idempotency key may or
may not have been accepted, so give one where that matters).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import yarl

from jobnode import __version__

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
# A job's last event (see docs/events.md): it completed, failed for good, or was cancelled.
TERMINAL_EVENTS = frozenset({"job.completed", "job.dead", "job.cancelled"})
# An event stream is silent at most a heartbeat (15 s by default); longer means it is dead.
STREAM_READ_TIMEOUT_S = 60.0
RECONNECT_PAUSE_S = 0.5
# How long a waiter trusts a silent event stream before it looks at the jobs itself.
EVENT_QUIET_RECHECK_S = 2.0

# Statuses worth asking again for: the server (or a proxy in front of it) says "not now".
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 2.0
# A server asking us to come back later than this gets the error straight away: the caller decides.
MAX_RETRY_AFTER_S = 30.0
# Statuses after which a client with several nodes tries another: this node cannot serve now.
FAILOVER_STATUSES = frozenset({502, 503, 504})
# Opening a connection takes a round trip; a node that has not answered the SYN in this long is
# treated as down (nothing was sent yet, so any request may move on to another node).
CONNECT_TIMEOUT_S = 3.0


class ClientError(Exception):
    """Base of every error this module raises."""


class ApiError(ClientError):
    """The server answered with an error; `code`, `message` and `details` come from its error body.

    `retry_after_s` is the server's Retry-After hint, or None when it gave none."""

    def __init__(
        self, status: int | None, code: str, message: str, details: Any = None, *, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s


class BadRequest(ApiError):
    """400: the request was malformed or invalid; `details` usually names the field."""


class UnknownQueue(BadRequest):
    """400 `unknown_queue`: no node serves the queue named; `details["queues"]` lists the ones served."""


class PayloadRejected(BadRequest):
    """400 `invalid_payload`: the payload breaks its type's schema; `details["errors"]` names each field."""


_ERRORS_BY_CODE: dict[str, type[ApiError]] = {"unknown_queue": UnknownQueue, "invalid_payload": PayloadRejected}


class AuthError(ApiError):
    """401: no token, or one the server does not accept (log in again)."""


class PermissionDenied(ApiError):
    """403: the token's role is too low for this route."""


class NotFoundError(ApiError):
    """404: no such job (or route)."""


class ConflictError(ApiError):
    """409: the job is in a state that forbids the request (e.g. retrying a completed job)."""


class RateLimitedError(ApiError):
    """429: over the request budget; `retry_after_s` says when to come back (None if unsaid)."""


class ServiceUnavailable(ApiError):
    """503: the node cannot serve right now (a dependency is down)."""


class ConnectionFailed(ApiError):
    """No HTTP answer at all: refused, reset, DNS failure, TLS failure or timeout.

    `sent` is False when no connection was opened, so the request cannot have reached the node."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(None, "connection_failed", message)
        self.sent = sent


class TlsFailed(ConnectionFailed):
    """The server answered but the TLS handshake failed; `untrusted` when its certificate did not verify.

    `problem` says what failed without advice, for callers (the CLI) that give their own.
    """

    def __init__(self, problem: str, *, untrusted: bool) -> None:
        advice = "; pass the CA that signed it as ca_file" if untrusted else ""
        super().__init__(problem + advice)
        self.problem, self.untrusted = problem, untrusted


class WaitTimeout(ClientError, TimeoutError):
    """Jobs did not reach a terminal status in time; `pending_ids` lists them, `jobs` the last views."""

    def __init__(self, message: str, *, pending_ids: list[str], jobs: dict[str, dict]) -> None:
        super().__init__(message)
        self.pending_ids = pending_ids
        self.jobs = jobs


_ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: AuthError,
    403: PermissionDenied,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitedError,
    503: ServiceUnavailable,
}


class SseParser:
    """Turns the lines of a text/event-stream into events: {"id", "event", "data"} dicts.

    `data` is the parsed JSON; a frame without `id:` (a stream.gap) has id None. Comments
    (heartbeats) and `retry:` lines are skipped."""

    def __init__(self) -> None:
        self._id: str | None = None
        self._event: str | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> dict | None:
        line = line.rstrip("\r\n")
        if not line:
            if not self._data and self._event is None:
                return None
            raw = "\n".join(self._data)
            event = {"id": self._id, "event": self._event or "message", "data": json.loads(raw) if raw else None}
            self._id, self._event, self._data = None, None, []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            self._id = value
        elif name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def _error_from_response(status: int, body: bytes, retry_after_s: float | None) -> ApiError:
    """Build the typed error for a non-2xx answer, tolerating bodies that are not jobnode's JSON."""
    try:
        error = json.loads(body)["error"]
        code, message, details = str(error["code"]), str(error["message"]), error.get("details")
    except (ValueError, KeyError, TypeError):
        # A proxy or load balancer answered, not jobnode: keep a bounded piece of what it said.
        code, message, details = f"http_{status}", body[:200].decode("utf-8", "replace").strip(), None
        message = message or f"HTTP {status} with no body"
    cls = _ERRORS_BY_CODE.get(code) or _ERRORS_BY_STATUS.get(status, ApiError)
    return cls(status, code, message, details, retry_after_s=retry_after_s)


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _quote_id(job_id: str) -> str:
    """A job id as one path segment: slashes and friends escaped, and never a `.`/`..` segment."""
    if not isinstance(job_id, str) or not job_id:
        raise ValueError("job id must be a non-empty string")
    quoted = quote(job_id, safe="")
    if set(quoted) == {"."}:
        quoted = quoted.replace(".", "%2E")
    return quoted


def _iso(value: datetime | str | None) -> str | None:
    """scheduled_at as the API wants it; a naive datetime is taken as UTC."""
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat().replace("+00:00", "Z")


def _parse_urls(base_url: str | Sequence[str]) -> list[str]:
    texts = base_url.split(",") if isinstance(base_url, str) else list(base_url)
    urls = []
    for text in (str(t).strip() for t in texts):
        url = yarl.URL(text)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8080, got {text!r}")
        urls.append(text.rstrip("/"))
    if not urls:
        raise ValueError("base_url names no node")
    return urls


def _ssl_setting(ca_file: str | None, verify_tls: bool) -> ssl.SSLContext | bool:
    """What aiohttp's `ssl=` wants: no checks, checks against our CA, or the system's trust store."""
    if not verify_tls:
        return False
    if ca_file is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_file {str(ca_file)!r} is not a readable PEM CA bundle: {exc}") from None


def _job_body(type: str, payload: dict | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type}
    if payload is not None:
        body["payload"] = payload
    body.update({name: value for name, value in fields.items() if value is not None})
    if "scheduled_at" in body:
        body["scheduled_at"] = _iso(body["scheduled_at"])
    return body


class AsyncClient:
    """A connection pool to jobnode nodes: one at a time, the next when it fails (any node accepts any request)."""

    def __init__(
        self,
        base_url: str | Sequence[str],
        *,
        token: str | None = None,
        ca_file: str | None = None,
        verify_tls: bool = True,
        timeout_s: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        """`base_url`: one node's URL, or several (a list, or one string with commas) to fail over
        between. `max_attempts`: tries of a safe request on each node before giving up."""
        self.urls = _parse_urls(base_url)
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._current = 0
        self.token = token
        self._ssl = _ssl_setting(ca_file, verify_tls)
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        """The node the client talks to now."""
        return self.urls[self._current]

    def _move_on(self, failed: int) -> None:
        """Leave node `failed` for the next one (unless a concurrent request already moved on)."""
        if self._current == failed:
            self._current = (failed + 1) % len(self.urls)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool; the client can still be used afterwards (it opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- transport -------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use so that it belongs to the loop that actually runs the requests.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=100),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=min(self.timeout_s, CONNECT_TIMEOUT_S)),
                headers={"User-Agent": f"jobnode-client/{__version__}", "Accept": "application/json"},
            )
        return self._session

    async def _pause(self, delay_s: float) -> None:
        """Wait before the next attempt (its own method so the wait is easy to observe)."""
        await asyncio.sleep(delay_s)

    async def _send_once(
        self, method: str, path: str, *, body: Any = None, params: dict | None = None, accept: Iterable[int] = ()
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        base_url = self.base_url
        url = yarl.URL(base_url + path, encoded=True)
        if params:
            url = url.with_query({k: str(v) for k, v in params.items() if v is not None})
        try:
            async with self._get_session().request(method, url, json=body, headers=headers) as resp:
                raw = await resp.read()
                status, retry_after = resp.status, _parse_retry_after(resp.headers.get("Retry-After"))
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = getattr(exc.certificate_error, "verify_message", None) or exc.certificate_error
            raise TlsFailed(f"{base_url} answered, but its TLS certificate is not trusted ({reason})",
                            untrusted=True) from None
        except aiohttp.ClientSSLError as exc:
            raise TlsFailed(f"{base_url} answered, but TLS failed: {exc}", untrusted=False) from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # No connection was opened: the request never left this process.
            raise ConnectionFailed(f"cannot reach {base_url}: {self._reason(exc)}", sent=False) from None
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
            raise ConnectionFailed(f"cannot reach {base_url}: {self._reason(exc)}") from None
        if 200 <= status < 300 or status in accept:
            try:
                return json.loads(raw) if raw else {}
            except ValueError:
                raise ApiError(status, "invalid_response", "the server's answer is not JSON") from None
        raise _error_from_response(status, raw, retry_after)

    def _reason(self, exc: Exception) -> str:
        """Why no answer came, in a few words ("Connection refused", "no answer within 10s")."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return f"no connection within {min(self.timeout_s, CONNECT_TIMEOUT_S):g}s"
        if isinstance(exc, asyncio.TimeoutError):
            return f"no answer within {self.timeout_s:g}s"
        if isinstance(exc, aiohttp.ClientConnectorError) and exc.os_error.errno:
            return os.strerror(exc.os_error.errno)
        return str(exc) or type(exc).__name__

    async def _request(self, method: str, path: str, *, retry: bool, **kwargs: Any) -> Any:
        """Send a request, repeating it on transient failures only when `retry` says that is safe.

        With several nodes, a failure that says "this node cannot serve" moves to the next node at
        once; the back-off comes only after every node was tried in a round."""
        attempt, tried = 1, 1
        while True:
            node = self._current
            try:
                return await self._send_once(method, path, **kwargs)
            except ApiError as exc:
                down = isinstance(exc, ConnectionFailed) and not isinstance(exc, TlsFailed)
                if len(self.urls) > 1 and (down or exc.status in FAILOVER_STATUSES):
                    never_sent = down and not exc.sent  # type: ignore[attr-defined]
                    if (retry or never_sent) and tried < len(self.urls):
                        self._move_on(node)
                        tried += 1
                        continue
                    if retry:
                        self._move_on(node)
                transient = down or exc.status in RETRYABLE_STATUSES
                if not (retry and transient) or attempt >= self.max_attempts:
                    raise
                if exc.retry_after_s is None:
                    # Jitter keeps many clients that failed together from coming back together.
                    delay_s = min(BACKOFF_BASE_S * 2 ** (attempt - 1), BACKOFF_MAX_S) * random.uniform(0.8, 1.2)
                elif exc.retry_after_s <= MAX_RETRY_AFTER_S:
                    delay_s = exc.retry_after_s
                else:
                    raise
                await self._pause(delay_s)
                attempt, tried = attempt + 1, 1

    # ---- jobs ------------------------------------------------------------------------------

    async def submit(
        self,
        type: str,
        payload: dict | None = None,
        *,
        priority: int | str | None = None,
        max_retries: int | None = None,
        timeout_seconds: float | None = None,
        scheduled_at: datetime | str | None = None,
        idempotency_key: str | None = None,
        queue: str | None = None,
        durability: str | None = None,
    ) -> dict:
        """Submit one job and return it (with its `id`). Retried on transient errors only if keyed.

        `durability`: "store" (acknowledged once MongoDB holds it) or "queue" (once Redis does);
        None: the job type's, else the node's default."""
        body = _job_body(
            type,
            payload,
            priority=priority,
            max_retries=max_retries,
            timeout_seconds=timeout_seconds,
            scheduled_at=scheduled_at,
            idempotency_key=idempotency_key,
            queue=queue,
            durability=durability,
        )
        return await self._request("POST", "/api/v1/jobs", body=body, retry=idempotency_key is not None)

    async def submit_batch(self, jobs: list[dict]) -> list[dict]:
        """Submit many jobs in one request (each a dict of submit's fields); returns them in order.

        Retried on transient errors only if every job carries an idempotency key."""
        bodies = [_job_body(**job) if "type" in job else dict(job) for job in jobs]
        keyed = bool(bodies) and all(body.get("idempotency_key") for body in bodies)
        answer = await self._request("POST", "/api/v1/jobs/batch", body={"jobs": bodies}, retry=keyed)
        return answer["jobs"]

    async def get(self, job_id: str) -> dict:
        """One job by id."""
        return await self._request("GET", f"/api/v1/jobs/{_quote_id(job_id)}", retry=True)

    async def list(
        self, status: str | None = None, type: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> dict:
        """One page of jobs, newest first: `{"jobs": [...], "count": n, "next_cursor": str | None}`."""
        params = {"status": status, "type": type, "limit": limit, "cursor": cursor}
        return await self._request("GET", "/api/v1/jobs", params=params, retry=True)

    async def iter_jobs(
        self, status: str | None = None, type: str | None = None, limit: int | None = None
    ) -> AsyncIterator[dict]:
        """Every matching job, newest first, following the cursor; `limit` is the page size."""
        cursor = None
        while True:
            page = await self.list(status=status, type=type, limit=limit, cursor=cursor)
            for job in page["jobs"]:
                yield job
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def wait(self, job_id: str, *, timeout_s: float = 60, poll_interval_s: float = 0.1,
                   on_event: Callable[[dict], None] | None = None) -> dict:
        """Wait until a job is completed, failed or cancelled, and return it; raises WaitTimeout
        after `timeout_s`. Follows the job's event stream (`on_event` sees each event, progress
        included), and polls a node that has none."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                async for item in self.job_events(job_id):
                    if on_event is not None:
                        on_event(item)
            return await self.get(job_id)
        except TimeoutError:
            job = await self.get(job_id)
            if job.get("status") in TERMINAL_STATUSES:
                return job
            raise WaitTimeout(f"job {job_id} is still {job.get('status')} after {timeout_s:g}s",
                              pending_ids=[job_id], jobs={job_id: job}) from None
        except ApiError as exc:
            # 404/405: a node without job event streams (or no such job, which the poll says).
            if exc.status not in (404, 405):
                raise
        return await self._poll(job_id, deadline, poll_interval_s, timeout_s)

    async def _poll(self, job_id: str, deadline: float, poll_interval_s: float, timeout_s: float) -> dict:
        while True:
            job = await self.get(job_id)
            if job.get("status") in TERMINAL_STATUSES:
                return job
            if asyncio.get_running_loop().time() + poll_interval_s > deadline:
                raise WaitTimeout(
                    f"job {job_id} is still {job.get('status')} after {timeout_s:g}s",
                    pending_ids=[job_id],
                    jobs={job_id: job},
                )
            await asyncio.sleep(poll_interval_s)

    async def wait_many(
        self,
        ids: Iterable[str],
        *,
        timeout_s: float = 60,
        poll_interval_s: float = 0.1,
        concurrency: int = 16,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[dict]:
        """Wait for every job in `ids` to finish; returns them in the order given.

        `on_progress(done, total)` is called as jobs finish. Raises WaitTimeout naming the
        unfinished ones after `timeout_s`."""
        order = list(dict.fromkeys(ids))
        pending, finished = list(order), {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        try:
            await self._wait_by_events(order, finished, deadline, concurrency, on_progress)
            return [finished[job_id] for job_id in order]
        except TimeoutError:
            pending = [job_id for job_id in order if job_id not in finished]
            raise WaitTimeout(f"{len(pending)} of {len(order)} jobs not finished after {timeout_s:g}s",
                              pending_ids=pending, jobs=finished) from None
        except ApiError as exc:
            if exc.status not in (404, 405):  # 404/405: a node without an event stream; poll it
                raise
        pending = [job_id for job_id in order if job_id not in finished]
        while pending:
            pending = await self._poll_round(pending, finished, concurrency)
            if on_progress is not None:
                on_progress(len(finished), len(order))
            if not pending:
                break
            if loop.time() + poll_interval_s > deadline:
                raise WaitTimeout(
                    f"{len(pending)} of {len(order)} jobs not finished after {timeout_s:g}s",
                    pending_ids=pending,
                    jobs=finished,
                )
            await asyncio.sleep(poll_interval_s)
        return [finished[job_id] for job_id in order]

    async def _wait_by_events(self, order: list[str], finished: dict[str, dict], deadline: float,
                              concurrency: int, on_progress: Callable[[int, int], None] | None) -> None:
        """Subscribe to terminal events first, then look at each job once: a job that ends
        after its look is caught by the stream, one that ended before by the look."""
        wanted = set(order)
        opened = asyncio.Event()
        stream = self._follow("/api/v1/events", {"event": ",".join(sorted(TERMINAL_EVENTS))}, None,
                              reconnect=True, opened=opened)
        ended: asyncio.Queue[str] = asyncio.Queue()

        async def listen() -> None:
            async for item in stream:
                job_id = (item.get("data") or {}).get("job")
                if item["event"] in TERMINAL_EVENTS and job_id in wanted:
                    ended.put_nowait(job_id)

        listener = asyncio.create_task(listen())
        try:
            async with asyncio.timeout_at(deadline):
                waiting_open = asyncio.create_task(opened.wait())
                await asyncio.wait([waiting_open, listener], return_when=asyncio.FIRST_COMPLETED)
                if listener.done():
                    waiting_open.cancel()
                    listener.result()  # the stream failed to open: raise its error
                for start in range(0, len(order), concurrency):
                    chunk = order[start : start + concurrency]
                    for job in await asyncio.gather(*(self.get(job_id) for job_id in chunk)):
                        if job.get("status") in TERMINAL_STATUSES:
                            finished[job["id"]] = job
                if on_progress is not None:
                    on_progress(len(finished), len(order))
                while len(finished) < len(order):
                    try:
                        job_id = await asyncio.wait_for(ended.get(), timeout=EVENT_QUIET_RECHECK_S)
                    except TimeoutError:
                        # The stream said nothing for a while: look at the unfinished jobs once, in
                        # case an event was missed (a reconnect beyond the retention) or announced
                        # a job whose read had not caught up yet.
                        pending = [j for j in order if j not in finished]
                        await self._poll_round(pending, finished, concurrency)
                    else:
                        if job_id not in finished:
                            job = await self.get(job_id)
                            if job.get("status") in TERMINAL_STATUSES:
                                finished[job_id] = job
                    if on_progress is not None:
                        on_progress(len(finished), len(order))
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _poll_round(self, pending: list[str], finished: dict[str, dict], concurrency: int) -> list[str]:
        """Look at pending jobs oldest first, a chunk at a time; return those still unfinished.

        Jobs tend to finish in submission order, so once a whole chunk is still running the rest
        almost surely is too: the round stops there instead of asking about thousands of jobs."""
        for start in range(0, len(pending), concurrency):
            chunk = pending[start : start + concurrency]
            jobs = await asyncio.gather(*(self.get(job_id) for job_id in chunk))
            done = {job_id: job for job_id, job in zip(chunk, jobs) if job.get("status") in TERMINAL_STATUSES}
            finished.update(done)
            if not done:
                break
        return [job_id for job_id in pending if job_id not in finished]

    async def cancel(self, job_id: str) -> dict:
        """Cancel a job that has not finished; returns the job."""
        return await self._request("POST", f"/api/v1/jobs/{_quote_id(job_id)}/cancel", retry=True)

    async def retry(self, job_id: str) -> dict:
        """Re-run a failed (dead-letter) job (admin); returns the job."""
        return await self._request("POST", f"/api/v1/jobs/{_quote_id(job_id)}/retry", retry=False)

    async def delete(self, job_id: str) -> dict:
        """Cancel if needed and delete a job's record (admin): `{"id": ..., "deleted": true}`."""
        return await self._request("DELETE", f"/api/v1/jobs/{_quote_id(job_id)}", retry=False)

    # ---- schedules and flow limits ------------------------------------------------------------

    async def schedules(self) -> list[dict]:
        """Every schedule."""
        return (await self._request("GET", "/api/v1/schedules", retry=True))["schedules"]

    async def schedule(self, name: str) -> dict:
        return await self._request("GET", f"/api/v1/schedules/{_quote_id(name)}", retry=True)

    async def create_schedule(self, schedule: dict) -> dict:
        """Create a schedule (admin): {name, cron | every_seconds, timezone, job: {type, ...}, ...}."""
        return await self._request("POST", "/api/v1/schedules", body=schedule, retry=False)

    async def update_schedule(self, name: str, changes: dict) -> dict:
        return await self._request("PUT", f"/api/v1/schedules/{_quote_id(name)}", body=changes, retry=True)

    async def set_schedule_paused(self, name: str, paused: bool) -> dict:
        action = "pause" if paused else "resume"
        return await self._request("POST", f"/api/v1/schedules/{_quote_id(name)}/{action}", retry=True)

    async def delete_schedule(self, name: str) -> None:
        await self._request("DELETE", f"/api/v1/schedules/{_quote_id(name)}", retry=False)

    async def limits(self) -> list[dict]:
        """Every flow limit, with the jobs running under it and waiting on it."""
        return (await self._request("GET", "/api/v1/limits", retry=True))["limits"]

    async def set_limit(self, scope: str, name: str, *, rate: dict | None = None,
                        concurrency: int | None = None) -> dict:
        """Set a queue's, type's or user's limit (admin); rate is {"count": N, "per": "second" | "minute"}."""
        body = {"rate": rate, "concurrency": concurrency}
        return await self._request("PUT", f"/api/v1/limits/{scope}/{_quote_id(name)}", body=body, retry=True)

    async def limit(self, scope: str, name: str) -> dict:
        return await self._request("GET", f"/api/v1/limits/{scope}/{_quote_id(name)}", retry=True)

    async def set_limit_paused(self, scope: str, name: str, paused: bool) -> dict:
        """Start none of its jobs (paused) or start them again (admin)."""
        action = "pause" if paused else "resume"
        return await self._request("POST", f"/api/v1/limits/{scope}/{_quote_id(name)}/{action}", retry=True)

    async def delete_limit(self, scope: str, name: str) -> None:
        await self._request("DELETE", f"/api/v1/limits/{scope}/{_quote_id(name)}", retry=False)

    # ---- events ----------------------------------------------------------------------------

    async def events(
        self,
        *,
        type: str | None = None,
        queue: str | None = None,
        job: str | None = None,
        event: str | None = None,
        last_event_id: str | None = None,
        reconnect: bool = True,
    ) -> AsyncIterator[dict]:
        """The cluster's events as they happen: `{"id", "event", "data"}` dicts.

        Filters are prefixes (`event="job."`), several comma-separated. After a dropped
        connection it reconnects with the last id it got, so nothing within the stream's
        retention is missed; a `stream.gap` event says that something was (resync then).
        Runs until you stop iterating (or, with `reconnect=False`, until the stream ends)."""
        params = {"type": type, "queue": queue, "job": job, "event": event}
        async for item in self._follow("/api/v1/events", params, last_event_id, reconnect=reconnect):
            yield item

    async def job_events(self, job_id: str, *, last_event_id: str | None = None) -> AsyncIterator[dict]:
        """One job's events from its submission, ending after its terminal event (reconnecting
        as `events` does); for a finished job, only its terminal event."""
        async for item in self._follow(f"/api/v1/jobs/{_quote_id(job_id)}/events", {}, last_event_id,
                                       reconnect=True, until_terminal=True):
            yield item

    async def logs(self, job_id: str) -> dict:
        """A job's last log lines: `{"id", "lines": [{"at", "attempt", "message"}], "count"}`."""
        return await self._request("GET", f"/api/v1/jobs/{_quote_id(job_id)}/logs", retry=True)

    async def stream_token(self) -> dict:
        """A short-lived token for opening an event stream with `?access_token=` (browsers)."""
        return await self._request("POST", "/api/v1/events/token", retry=False)

    async def _follow(self, path: str, params: dict, last_event_id: str | None, *, reconnect: bool,
                      until_terminal: bool = False, opened: asyncio.Event | None = None) -> AsyncIterator[dict]:
        query = {name: str(value) for name, value in params.items() if value is not None}
        while True:
            headers = {"Accept": "text/event-stream"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            node = self._current
            url = yarl.URL(self.base_url + path, encoded=True).with_query(query)
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s, sock_read=STREAM_READ_TIMEOUT_S)
            try:
                async with self._get_session().get(url, headers=headers, timeout=timeout) as resp:
                    if resp.status != 200:
                        raise _error_from_response(resp.status, await resp.read(),
                                                   _parse_retry_after(resp.headers.get("Retry-After")))
                    if opened is not None:
                        opened.set()
                    parser = SseParser()
                    async for raw in resp.content:
                        item = parser.feed(raw.decode("utf-8", "replace"))
                        if item is None:
                            continue
                        if item["id"]:
                            last_event_id = item["id"]
                        yield item
                        if until_terminal and item["event"] in TERMINAL_EVENTS:
                            return
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if not reconnect:
                    raise ConnectionFailed(f"event stream from {self.base_url} broke: {self._reason(exc)}") from None
                self._move_on(node)  # with several nodes, resume from the next (Last-Event-ID holds across nodes)
            else:
                if not reconnect:
                    return
            await self._pause(RECONNECT_PAUSE_S)

    # ---- cluster ---------------------------------------------------------------------------

    async def types(self) -> list[dict]:
        """Every job type in the cluster: its queue, the nodes running it, its payload schema and description."""
        return (await self._request("GET", "/api/v1/types", retry=True))["types"]

    async def stats(self) -> dict:
        """Counts per status, queue depths, throughput, this node and the leader."""
        return await self._request("GET", "/api/v1/stats", retry=True)

    async def workers(self) -> dict:
        """Every worker in the cluster (admin)."""
        return await self._request("GET", "/api/v1/workers", retry=True)

    async def nodes(self) -> dict:
        """Every node in the cluster with its role and health (admin)."""
        return await self._request("GET", "/api/v1/nodes", retry=True)

    async def leader(self) -> dict:
        """Who leads, since when, under which algorithm and term."""
        return await self._request("GET", "/api/v1/leader", retry=True)

    async def cluster(self) -> dict:
        """Cluster size, leader, election algorithm and nodes (admin)."""
        return await self._request("GET", "/api/v1/cluster", retry=True)

    async def leave_cluster(self) -> dict:
        """Make this node leave the membership and stop serving (admin); never retried."""
        return await self._request("POST", "/api/v1/cluster/leave", retry=False)

    async def remove_member(self, node_id: str) -> dict:
        """Remove a node gone for good from the membership (admin): `{"removed": bool, ...}`,
        false while the change is still under way."""
        return await self._request("DELETE", f"/api/v1/cluster/members/{_quote_id(node_id)}", retry=True)

    async def election(self) -> dict:
        """This node's view of the election: leader, term, role, members and quorum."""
        return await self._request("GET", "/api/v1/election", retry=True)

    async def elections(self, limit: int | None = None) -> dict:
        """Leader-change history, newest first (admin): `{"elections": [...], "count": n}`."""
        return await self._request("GET", "/api/v1/elections", params={"limit": limit}, retry=True)

    async def algorithms(self, name: str | None = None) -> dict:
        """Every election algorithm described (with the current one's settings), or just `name`."""
        path = "/api/v1/election/algorithms" + (f"/{_quote_id(name)}" if name is not None else "")
        return await self._request("GET", path, retry=True)

    async def health(self) -> dict:
        """The node's health body, whether it is serving (200) or not (503)."""
        return await self._request("GET", "/health", accept=(503,), retry=True)

    async def login(self, username: str, password: str) -> dict:
        """Exchange credentials for a token, keep it for later requests, and return the answer."""
        answer = await self._request(
            "POST", "/auth/login", body={"username": username, "password": password}, retry=False
        )
        self.token = answer["access_token"]
        return answer


T = TypeVar("T")


async def _next(stream: AsyncIterator[T]) -> T:
    return await anext(stream)


def _blocking(method: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Turn an AsyncClient method into a Client method that runs it on the client's private loop."""

    @functools.wraps(method)
    def call(self: Client, *args: Any, **kwargs: Any) -> T:
        self._check_open()
        return self._run(method(self._async, *args, **kwargs))

    return call


class Client:
    """A blocking AsyncClient for scripts and notebooks.

    It runs the async client on its own event loop in a background thread, so it works the same
    from plain code, from threads, and from inside a running event loop (Jupyter)."""

    def __init__(self, base_url: str | Sequence[str], **options: Any) -> None:
        self._async = AsyncClient(base_url, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobnode-client", daemon=True)
        self._thread.start()

    def _check_open(self) -> None:
        if self._loop.is_closed():
            raise RuntimeError("this Client is closed")

    def _run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections and stop the background loop; safe to call twice."""
        if self._loop.is_closed():
            return
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    @property
    def token(self) -> str | None:
        return self._async.token

    @token.setter
    def token(self, value: str | None) -> None:
        self._async.token = value

    submit = _blocking(AsyncClient.submit)
    submit_batch = _blocking(AsyncClient.submit_batch)
    get = _blocking(AsyncClient.get)
    list = _blocking(AsyncClient.list)
    wait = _blocking(AsyncClient.wait)
    wait_many = _blocking(AsyncClient.wait_many)
    logs = _blocking(AsyncClient.logs)
    stream_token = _blocking(AsyncClient.stream_token)
    cancel = _blocking(AsyncClient.cancel)
    retry = _blocking(AsyncClient.retry)
    delete = _blocking(AsyncClient.delete)
    types = _blocking(AsyncClient.types)
    stats = _blocking(AsyncClient.stats)
    workers = _blocking(AsyncClient.workers)
    nodes = _blocking(AsyncClient.nodes)
    leader = _blocking(AsyncClient.leader)
    cluster = _blocking(AsyncClient.cluster)
    election = _blocking(AsyncClient.election)
    elections = _blocking(AsyncClient.elections)
    algorithms = _blocking(AsyncClient.algorithms)
    health = _blocking(AsyncClient.health)
    login = _blocking(AsyncClient.login)

    def events(self, **filters: Any) -> Iterator[dict]:
        """`AsyncClient.events` for blocking code: iterate, and break out when done."""
        return self._iterate(self._async.events(**filters))

    def job_events(self, job_id: str, **options: Any) -> Iterator[dict]:
        return self._iterate(self._async.job_events(job_id, **options))

    def _iterate(self, stream: AsyncIterator[dict]) -> Iterator[dict]:
        self._check_open()
        try:
            while True:
                try:
                    yield self._run(_next(stream))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(stream.aclose())  # type: ignore[attr-defined]

    def iter_jobs(self, status: str | None = None, type: str | None = None, limit: int | None = None) -> Iterator[dict]:
        """Every matching job, newest first, fetched page by page as you iterate."""
        cursor = None
        while True:
            page = self.list(status=status, type=type, limit=limit, cursor=cursor)
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
