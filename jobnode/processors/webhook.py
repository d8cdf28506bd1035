"""The `http` built-in: makes the request a payload describes (a webhook) and returns the answer."""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import yarl
from aiohttp.abc import AbstractResolver

from jobnode import __version__
from jobnode.core.job import Job
from jobnode.processors.destinations import DESTINATION_NOT_ALLOWED, DestinationPolicy, guarded_connector, refusal_in
from jobnode.processors.payload import invalid_field, number_field, payload_object, reject_unknown_fields
from jobnode.processors.registry import PermanentError, RetryableError

HTTP_FIELDS = ("url", "method", "headers", "json", "body", "timeout_seconds", "expect_status")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
DEFAULT_HTTP_TIMEOUT_S = 10.0
MAX_HTTP_TIMEOUT_S = 300.0
MAX_RESPONSE_BODY_BYTES = 64 * 1024
MAX_REDIRECTS = 5
MAX_URL_LEN = 8192
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRYABLE_STATUSES = frozenset({408, 429})
RESULT_HEADERS = ("content-type", "content-length")
# We compute the framing of the request ourselves; letting a payload set it corrupts the request.
FORBIDDEN_REQUEST_HEADERS = frozenset({"content-length", "transfer-encoding"})
# Not forwarded when a redirect leaves the origin, so a token never reaches a host it was not meant for.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpRequest:
    """A validated `http` payload."""

    url: yarl.URL
    method: str
    headers: dict[str, str]
    has_json: bool
    json: Any
    body: str | None
    timeout_s: float
    expect_status: frozenset[int] | None

    def body_kwargs(self) -> dict[str, Any]:
        if self.has_json:
            return {"json": self.json}
        if self.body is not None:
            return {"data": self.body.encode()}
        return {}


def parse_http_request(payload: dict[str, Any]) -> HttpRequest:
    """Validate an `http` payload; raises PermanentError naming the first bad field."""
    reject_unknown_fields(payload, HTTP_FIELDS)
    if "json" in payload and "body" in payload:
        raise invalid_field("payload.body", "give either json or body, not both")
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        raise invalid_field("payload.body", "must be a string (use json for structured data)")
    return HttpRequest(
        url=_parse_url(payload.get("url")),
        method=_parse_method(payload.get("method", "GET")),
        headers=_parse_headers(payload.get("headers", {})),
        has_json="json" in payload,
        json=payload.get("json"),
        body=body,
        timeout_s=number_field(payload, "timeout_seconds", 0.001, MAX_HTTP_TIMEOUT_S, DEFAULT_HTTP_TIMEOUT_S),
        expect_status=_parse_expect_status(payload.get("expect_status")),
    )


def _parse_url(value: Any) -> yarl.URL:
    name = "payload.url"
    if value is None:
        raise invalid_field(name, "is required (an http or https URL)")
    if not isinstance(value, str) or len(value) > MAX_URL_LEN:
        raise invalid_field(name, f"must be an http or https URL of at most {MAX_URL_LEN} characters")
    try:
        url = yarl.URL(value)
    except ValueError as exc:
        raise invalid_field(name, f"{value[:200]!r} is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise invalid_field(name, f"{value[:200]!r} is not an http or https URL with a host")
    return url


def _parse_method(value: Any) -> str:
    method = value.upper() if isinstance(value, str) else None
    if method not in HTTP_METHODS:
        raise invalid_field("payload.method", f"must be one of {', '.join(HTTP_METHODS)}, got {value!r}")
    return method


def _parse_headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid_field("payload.headers", "must be an object of header name to string value")
    for key, item in value.items():
        name = f"payload.headers.{key}"
        if not isinstance(key, str) or not _HEADER_NAME_RE.fullmatch(key):
            raise invalid_field(name, "is not a valid header name")
        if key.lower() in FORBIDDEN_REQUEST_HEADERS:
            raise invalid_field(name, "is set by the processor and may not be given")
        if not isinstance(item, str):
            raise invalid_field(name, f"value must be a string, got {type(item).__name__}")
        if any(ch in item for ch in "\r\n\x00"):
            raise invalid_field(name, "value must not contain CR, LF or NUL (header injection)")
    return dict(value)


def _parse_expect_status(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    codes = value if isinstance(value, list) else [value]
    if not codes or any(isinstance(c, bool) or not isinstance(c, int) or not 100 <= c <= 599 for c in codes):
        raise invalid_field("payload.expect_status", "must be a status (100-599) or a non-empty list of them")
    return frozenset(codes)


_STATUS = {"type": "integer", "minimum": 100, "maximum": 599}
HTTP_PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": MAX_URL_LEN},
        "method": {"type": "string"},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "json": {},
        "body": {"type": "string"},
        "timeout_seconds": {"type": "number", "minimum": 0.001, "maximum": MAX_HTTP_TIMEOUT_S},
        "expect_status": {"anyOf": [_STATUS, {"type": "array", "items": _STATUS, "minItems": 1}]},
    },
    "required": ["url"],
    "additionalProperties": False,
}


class HttpProcessor:
    """`http`: makes the request a payload describes (a webhook) and returns the answer.

    Payload: url (required), method (GET), headers, json or body, timeout_seconds (10, max 300),
    expect_status (status or list; default: any status below 400).
    Result: {status, headers: {content-type, content-length}, body (text, first 64 KiB),
    truncated, elapsed_ms}.
    Retryable: connection errors, timeouts, 5xx, 408, 429. Permanent: other 4xx, a status not in
    expect_status, an invalid payload, a redirect that changes scheme or goes past 5 hops.
    Cookies are never kept between jobs.

    Every connection, redirects included, goes only to addresses `policy` allows (by default
    no loopback, private, link-local or otherwise internal one); a refused one fails the job
    permanently with "destination not allowed". Connection errors say only "connection failed",
    so a job cannot map which internal ports are open; the node's log has the detail.
    `resolver` replaces the system DNS resolver (tests use a hosts-style one).
    """

    type = "http"
    payload_schema = HTTP_PAYLOAD_SCHEMA

    def __init__(self, policy: DestinationPolicy | None = None, resolver: AbstractResolver | None = None) -> None:
        self.policy = policy or DestinationPolicy()
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use so it binds to the running loop, not to whatever loop built the registry.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=guarded_connector(self.policy, self._resolver),
                trust_env=False,  # a proxy from the environment would dial for us, past the policy
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),  # the per-job deadline below governs
                headers={"User-Agent": f"jobnode/{__version__}"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def process(self, job: Job) -> Any:
        request = parse_http_request(payload_object(job))
        where = f"{request.method} {_display(request.url)}"
        started = time.monotonic()
        try:
            async with asyncio.timeout(request.timeout_s):
                status, headers, data, truncated, charset = await self._exchange(request)
        except TimeoutError:
            reason = f"http: {where} gave no complete answer within {request.timeout_s:g}s"
            raise RetryableError(reason) from None
        except aiohttp.InvalidURL as exc:
            raise invalid_field("payload.url", f"invalid URL {exc}") from None
        except aiohttp.ClientError as exc:
            refused = refusal_in(exc)
            if refused is not None:
                log.warning("http job %s: %s refused by the destination policy (%s)", job.id, where, refused.address)
                raise PermanentError(f"http: {where}: {DESTINATION_NOT_ALLOWED}") from None
            log.info("http job %s: %s failed: %s: %s", job.id, where, type(exc).__name__, exc)
            raise RetryableError(f"http: {where}: connection failed") from None
        elapsed_ms = round((time.monotonic() - started) * 1000, 1)
        text = _decode(data, charset, truncated)
        _check_status(request, status, where, text)
        return {
            "status": status,
            "headers": headers,
            "body": text,
            "truncated": truncated,
            "elapsed_ms": elapsed_ms,
        }

    async def _exchange(self, request: HttpRequest) -> tuple[int, dict[str, str], bytes, bool, str | None]:
        """Send the request, following up to MAX_REDIRECTS same-scheme redirects by hand."""
        url, method, headers, with_body = request.url, request.method, dict(request.headers), True
        for _hop in range(MAX_REDIRECTS + 1):
            body = request.body_kwargs() if with_body else {}
            send = self._client().request(method, url, headers=headers, allow_redirects=False, **body)
            async with send as resp:
                location = resp.headers.get("Location")
                expected = request.expect_status is not None and resp.status in request.expect_status
                if resp.status not in REDIRECT_STATUSES or not location or expected:
                    data, truncated = await _read_limited(resp, MAX_RESPONSE_BODY_BYTES)
                    kept = {k: resp.headers[k] for k in RESULT_HEADERS if k in resp.headers}
                    return resp.status, kept, data, truncated, resp.charset
                next_url = _redirect_target(url, location)
                method, keep_body = _redirected_method(resp.status, method)
                with_body = with_body and keep_body
                if not keep_body:
                    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
                if next_url.origin() != url.origin():
                    headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
                url = next_url
        raise PermanentError(f"http: more than {MAX_REDIRECTS} redirects from {_display(request.url)}")


def _redirect_target(url: yarl.URL, location: str) -> yarl.URL:
    try:
        target = url.join(yarl.URL(location))
    except ValueError:
        reason = f"http: {_display(url)} redirected to an invalid Location {location[:200]!r}"
        raise PermanentError(reason) from None
    if target.scheme != url.scheme:
        # Following silently could downgrade https to http (or leave HTTP altogether); the caller decides.
        raise PermanentError(
            f"http: {_display(url)} redirected to {_display(target)}, which changes the scheme; "
            "not followed (put the final URL in payload.url)"
        )
    return target


def _redirected_method(status: int, method: str) -> tuple[str, bool]:
    """The method for the next hop and whether the body goes with it (what browsers and curl do)."""
    if status == 303 and method != "HEAD":
        return "GET", False
    if status in (301, 302) and method == "POST":
        return "GET", False
    return method, True


async def _read_limited(resp: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while size <= limit:  # read one byte past the limit to know whether there was more
        chunk = await resp.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    data = b"".join(chunks)
    return data[:limit], size > limit


def _decode(data: bytes, charset: str | None, truncated: bool) -> str:
    try:
        decoder = codecs.getincrementaldecoder(charset or "utf-8")(errors="replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # Not final when truncated: a character cut in half at the limit is dropped, not garbled.
    return decoder.decode(data, final=not truncated)


def _check_status(request: HttpRequest, status: int, where: str, text: str) -> None:
    if request.expect_status is not None and status in request.expect_status:
        return
    message = f"http: {where} answered {status}: {text[:200]}"
    if status >= 500 or status in RETRYABLE_STATUSES:
        raise RetryableError(message)
    if request.expect_status is None and status < 400:
        return
    if request.expect_status is not None:
        message += f" (expected {', '.join(map(str, sorted(request.expect_status)))})"
    raise PermanentError(message)


def _display(url: yarl.URL) -> str:
    """A URL for error messages: without credentials, query or fragment, which may hold secrets."""
    return str(url.with_user(None).with_query(None).with_fragment(None))
