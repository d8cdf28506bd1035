"""The processors every node ships: echo, sleep, http (webhooks) and email.

Each validates its payload before doing anything and answers a bad one with a PermanentError
whose `field` names the offending key ("payload.url"), so the job fails at once instead of
being retried into the dead-letter set.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import math
import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import aiohttp
import yarl

from jobnode import __version__
from jobnode.core.job import Job
from jobnode.processors.registry import PermanentError, Processor, RetryableError, run_in_thread

log = logging.getLogger(__name__)

_REQUIRED = object()


def builtin_processors(settings: Any) -> list[Processor]:
    """One instance of each built-in; only the email processor reads `settings` (its smtp_* fields)."""
    email = EmailProcessor(SmtpConfig.from_settings(settings))
    return [EchoProcessor(), SleepProcessor(), HttpProcessor(), email]


# --- payload checks shared by the built-ins -------------------------------------------------


def _payload(job: Job) -> dict[str, Any]:
    if not isinstance(job.payload, dict):
        raise _invalid("payload", "must be a JSON object")
    return job.payload


def _invalid(field_name: str, reason: str) -> PermanentError:
    """The error for a bad payload field: "payload.url: must be ..." with `field` set."""
    return PermanentError(f"{field_name}: {reason}", field=field_name)


def _reject_unknown(payload: dict[str, Any], allowed: tuple[str, ...]) -> None:
    # Strict on purpose: a misspelt key ("header") would otherwise be ignored without a word.
    unknown = sorted(set(payload) - set(allowed))
    if unknown:
        raise _invalid(f"payload.{unknown[0]}", f"unknown field; allowed: {', '.join(allowed)}")


def _number(payload: dict[str, Any], key: str, low: float, high: float, default: Any = _REQUIRED) -> float:
    name = f"payload.{key}"
    value = payload.get(key, default)
    if value is _REQUIRED:
        raise _invalid(name, f"is required (a number from {low:g} to {high:g})")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _invalid(name, f"must be a number from {low:g} to {high:g}, got {value!r}")
    if not low <= value <= high:
        raise _invalid(name, f"must be from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _flag(payload: dict[str, Any], key: str) -> bool:
    value = payload.get(key, False)
    if not isinstance(value, bool):
        raise _invalid(f"payload.{key}", f"must be true or false, got {value!r}")
    return value


# --- echo and sleep ----------------------------------------------------------------------------


class EchoProcessor:
    """`echo`: returns the job's payload as its result (smoke tests, plumbing checks)."""

    type = "echo"

    async def process(self, job: Job) -> Any:
        return job.payload


class SleepProcessor:
    """`sleep`: waits `payload.seconds` (0..3600), for tests and load generation.

    Optional switches, checked after the wait, to exercise the failure paths:
    - `fail: true` raises a RetryableError, so the job goes through its retries;
    - `fail_permanently: true` raises a PermanentError, so it fails at once (dead-letter tests).
    Result: `{"slept_seconds": seconds}`.
    """

    type = "sleep"
    max_seconds = 3600.0

    async def process(self, job: Job) -> Any:
        payload = _payload(job)
        seconds = _number(payload, "seconds", 0, self.max_seconds)
        fail, fail_permanently = _flag(payload, "fail"), _flag(payload, "fail_permanently")
        await asyncio.sleep(seconds)
        if fail_permanently:
            raise PermanentError("sleep: failed permanently as asked (payload.fail_permanently)")
        if fail:
            raise RetryableError("sleep: failed as asked (payload.fail)")
        return {"slept_seconds": seconds}


# --- http ----------------------------------------------------------------------------------------

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
    _reject_unknown(payload, HTTP_FIELDS)
    if "json" in payload and "body" in payload:
        raise _invalid("payload.body", "give either json or body, not both")
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        raise _invalid("payload.body", "must be a string (use json for structured data)")
    return HttpRequest(
        url=_parse_url(payload.get("url")),
        method=_parse_method(payload.get("method", "GET")),
        headers=_parse_headers(payload.get("headers", {})),
        has_json="json" in payload,
        json=payload.get("json"),
        body=body,
        timeout_s=_number(payload, "timeout_seconds", 0.001, MAX_HTTP_TIMEOUT_S, DEFAULT_HTTP_TIMEOUT_S),
        expect_status=_parse_expect_status(payload.get("expect_status")),
    )


def _parse_url(value: Any) -> yarl.URL:
    name = "payload.url"
    if value is None:
        raise _invalid(name, f"is required (an http or https URL)")
    if not isinstance(value, str) or len(value) > MAX_URL_LEN:
        raise _invalid(name, f"must be an http or https URL of at most {MAX_URL_LEN} characters")
    try:
        url = yarl.URL(value)
    except ValueError as exc:
        raise _invalid(name, f"{value[:200]!r} is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise _invalid(name, f"{value[:200]!r} is not an http or https URL with a host")
    return url


def _parse_method(value: Any) -> str:
    method = value.upper() if isinstance(value, str) else None
    if method not in HTTP_METHODS:
        raise _invalid("payload.method", f"must be one of {', '.join(HTTP_METHODS)}, got {value!r}")
    return method


def _parse_headers(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _invalid("payload.headers", "must be an object of header name to string value")
    for key, item in value.items():
        name = f"payload.headers.{key}"
        if not isinstance(key, str) or not _HEADER_NAME_RE.fullmatch(key):
            raise _invalid(name, f"is not a valid header name")
        if key.lower() in FORBIDDEN_REQUEST_HEADERS:
            raise _invalid(name, f"is set by the processor and may not be given")
        if not isinstance(item, str):
            raise _invalid(name, f"value must be a string, got {type(item).__name__}")
        if any(ch in item for ch in "\r\n\x00"):
            raise _invalid(name, f"value must not contain CR, LF or NUL (header injection)")
    return dict(value)


def _parse_expect_status(value: Any) -> frozenset[int] | None:
    if value is None:
        return None
    codes = value if isinstance(value, list) else [value]
    if not codes or any(isinstance(c, bool) or not isinstance(c, int) or not 100 <= c <= 599 for c in codes):
        raise _invalid("payload.expect_status", "must be a status (100-599) or a non-empty list of them")
    return frozenset(codes)


class HttpProcessor:
    """`http`: makes the request a payload describes (a webhook) and returns the answer.

    Payload: url (required), method (GET), headers, json or body, timeout_seconds (10, max 300),
    expect_status (status or list; default: any status below 400).
    Result: {status, headers: {content-type, content-length}, body (text, first 64 KiB),
    truncated, elapsed_ms}.
    Retryable: connection errors, timeouts, 5xx, 408, 429. Permanent: other 4xx, a status not in
    expect_status, an invalid payload, a redirect that changes scheme or goes past 5 hops.
    Cookies are never kept between jobs.
    """

    type = "http"

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Created on first use so it binds to the running loop, not to whatever loop built the registry.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
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
        request = parse_http_request(_payload(job))
        where = f"{request.method} {_display(request.url)}"
        started = time.monotonic()
        try:
            async with asyncio.timeout(request.timeout_s):
                status, headers, data, truncated, charset = await self._exchange(request)
        except TimeoutError:
            reason = f"http: {where} gave no complete answer within {request.timeout_s:g}s"
            raise RetryableError(reason) from None
        except aiohttp.InvalidURL as exc:
            raise _invalid("payload.url", f"invalid URL {exc}") from None
        except aiohttp.ClientError as exc:
            raise RetryableError(f"http: {where} failed: {type(exc).__name__}: {exc}") from exc
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


# --- email ---------------------------------------------------------------------------------------

EMAIL_FIELDS = ("recipient", "subject", "body", "from")
MAX_RECIPIENTS = 100
MAX_SUBJECT_LEN = 998
SMTP_TIMEOUT_S = 30.0
_LOCAL_PART = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = rf"{_LOCAL_PART}@{_LABEL}(?:\.{_LABEL})*"
_ADDRESS_RE = re.compile(rf"(?:(?P<name>[^<>\"]*?)\s*<(?P<bracketed>{_ADDR_SPEC})>|(?P<bare>{_ADDR_SPEC}))")


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how the email processor delivers; `host=None` means record instead of send."""

    host: str | None
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_address: str = "jobnode@localhost"
    starttls: bool = False
    timeout_s: float = SMTP_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpConfig:
        return cls(
            host=settings.smtp_host or None,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password,
            from_address=settings.smtp_from,
            starttls=bool(settings.smtp_starttls),
        )


@dataclass(frozen=True)
class EmailRequest:
    """A validated `email` payload."""

    sender: Address
    recipients: tuple[Address, ...]
    subject: str
    body: str

    def to_message(self, job_id: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = self.recipients
        message["Subject"] = self.subject
        message["Date"] = formatdate(usegmt=True)
        # An explicit domain: make_msgid's default asks DNS for this host's FQDN, which can stall.
        message["Message-ID"] = make_msgid(domain=self.sender.domain)
        message["X-Jobnode-Job-Id"] = job_id
        message.set_content(self.body)
        return message

    def describe(self) -> dict[str, Any]:
        return {
            "from": str(self.sender),
            "recipients": [a.addr_spec for a in self.recipients],
            "subject": self.subject,
            "body": self.body,
        }


def parse_email_request(payload: dict[str, Any], default_sender: str) -> EmailRequest:
    """Validate an `email` payload; raises PermanentError naming the first bad field."""
    _reject_unknown(payload, EMAIL_FIELDS)
    body = payload.get("body", "")
    if not isinstance(body, str):
        raise _invalid("payload.body", "must be a string")
    return EmailRequest(
        sender=_parse_address(payload.get("from", default_sender), "payload.from"),
        recipients=_parse_recipients(payload.get("recipient")),
        subject=_parse_subject(payload.get("subject")),
        body=body,
    )


def _parse_recipients(value: Any) -> tuple[Address, ...]:
    name = "payload.recipient"
    if value is None:
        raise _invalid(name, f"is required (an email address or a list of them)")
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > MAX_RECIPIENTS:
        raise _invalid(name, f"give 1 to {MAX_RECIPIENTS} addresses")
    if isinstance(value, list):
        return tuple(_parse_address(item, f"{name}[{i}]") for i, item in enumerate(values))
    return (_parse_address(value, name),)


def _parse_address(value: Any, name: str) -> Address:
    """Accept `user@example.com` or `Display Name <user@example.com>`."""
    if not isinstance(value, str) or not value.isprintable():  # CR/LF are not printable
        raise _invalid(name, f"must be an email address on one line, e.g. user@example.com")
    match = _ADDRESS_RE.fullmatch(value.strip())
    if match is None:
        raise _invalid(name, f"{value[:200]!r} is not an email address like user@example.com")
    addr_spec = match["bracketed"] or match["bare"]
    local, domain = addr_spec.rsplit("@", 1)
    return Address(display_name=(match["name"] or "").strip(), username=local, domain=domain)


def _parse_subject(value: Any) -> str:
    name = "payload.subject"
    if not isinstance(value, str) or not value.strip():
        raise _invalid(name, f"is required (a non-empty string)")
    if "\r" in value or "\n" in value:
        raise _invalid(name, f"must not contain CR or LF (header injection)")
    if not value.isprintable() or len(value) > MAX_SUBJECT_LEN:
        raise _invalid(name, f"must be printable text of at most {MAX_SUBJECT_LEN} characters")
    return value


class EmailProcessor:
    """`email`: sends a plain-text message through SMTP, or records it when no SMTP host is set.

    Payload: recipient (address or list), subject (one line), body (optional), from (optional,
    default SMTP_FROM). Sent: {sent: true, recipients, refused, message_id}. Recorded (no
    SMTP_HOST): {sent: false, recorded: {from, recipients, subject, body}}.
    Connection failures and SMTP 4xx are retryable; SMTP 5xx rejections are permanent. Delivery is
    at-least-once: a connection lost after the server took the message leads to a second copy,
    which the X-Jobnode-Job-Id header lets a reader recognise.
    """

    type = "email"

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        try:
            _parse_address(config.from_address, "SMTP_FROM")
        except PermanentError as exc:  # a configuration mistake, not a job's
            raise ValueError(str(exc)) from None
        # Given explicitly: smtplib's default asks DNS for the FQDN, which can stall a worker thread.
        self._local_hostname = socket.gethostname() or "localhost"

    async def process(self, job: Job) -> Any:
        request = parse_email_request(_payload(job), self.config.from_address)
        if self.config.host is None:
            log.info("email job %s recorded, not sent: SMTP_HOST is not set", job.id)
            return {"sent": False, "recorded": request.describe()}
        message = request.to_message(job.id)
        recipients = [a.addr_spec for a in request.recipients]
        try:
            sender = request.sender.addr_spec
            refused = await run_in_thread(
                _send_blocking, self.config, self._local_hostname, message, sender, recipients
            )
        except smtplib.SMTPRecipientsRefused as exc:
            raise _recipients_refused_error(exc) from None
        except smtplib.SMTPResponseException as exc:
            reason = f"email: SMTP server {self._server} answered {exc.smtp_code} {_text(exc.smtp_error)}"
            raise (PermanentError(reason) if exc.smtp_code >= 500 else RetryableError(reason)) from None
        except smtplib.SMTPNotSupportedError as exc:
            reason = f"email: SMTP server {self._server} does not support a required step: {exc}"
            raise PermanentError(reason) from None
        except (smtplib.SMTPException, OSError) as exc:
            reason = f"email: cannot deliver through {self._server}: {type(exc).__name__}: {exc}"
            raise RetryableError(reason) from exc
        return {
            "sent": True,
            "recipients": [r for r in recipients if r not in refused],
            "refused": {addr: f"{code} {_text(text)}" for addr, (code, text) in refused.items()},
            "message_id": message["Message-ID"],
        }

    @property
    def _server(self) -> str:
        return f"{self.config.host}:{self.config.port}"


def _send_blocking(
    config: SmtpConfig, local_hostname: str, message: EmailMessage, sender: str, recipients: list[str]
) -> dict[str, tuple[int, bytes]]:
    """One SMTP session (runs in a worker thread); returns the recipients the server refused."""
    smtp = smtplib.SMTP(config.host, config.port, local_hostname=local_hostname, timeout=config.timeout_s)
    with smtp:
        if config.starttls:
            smtp.starttls(context=ssl.create_default_context())
        if config.username:
            smtp.login(config.username, config.password or "")
        return smtp.send_message(message, from_addr=sender, to_addrs=recipients)


def _recipients_refused_error(exc: smtplib.SMTPRecipientsRefused) -> Exception:
    # Every recipient was refused; it is permanent only if every refusal was.
    details = "; ".join(f"{addr}: {code} {_text(text)}" for addr, (code, text) in exc.recipients.items())
    reason = f"email: every recipient refused ({details})"
    permanent = all(code >= 500 for code, _ in exc.recipients.values())
    return PermanentError(reason) if permanent else RetryableError(reason)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
