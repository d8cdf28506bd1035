"""The `email` built-in: sends a plain-text message through SMTP, or records it when no SMTP host is set."""

from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from jobnode.core.job import Job
from jobnode.processors.payload import invalid_field, payload_object, reject_unknown_fields
from jobnode.processors.registry import PermanentError, RetryableError
from jobnode.processors.threads import run_in_thread

log = logging.getLogger(__name__)

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
    # Domains a payload's `from` may use besides SMTP_FROM's own address (SMTP_ALLOWED_FROM).
    allowed_from_domains: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> SmtpConfig:
        return cls(
            host=settings.smtp_host or None,
            port=settings.smtp_port,
            username=settings.smtp_username or None,
            password=settings.smtp_password,
            from_address=settings.smtp_from,
            starttls=bool(settings.smtp_starttls),
            allowed_from_domains=tuple(settings.smtp_allowed_from or ()),
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


def parse_email_request(payload: dict[str, Any], default_sender: str,
                        allowed_from_domains: tuple[str, ...] = ()) -> EmailRequest:
    """Validate an `email` payload; raises PermanentError naming the first bad field.

    A `from` must be SMTP_FROM's own address or one in `allowed_from_domains`: a job may not
    send mail in just anybody's name.
    """
    reject_unknown_fields(payload, EMAIL_FIELDS)
    body = payload.get("body", "")
    if not isinstance(body, str):
        raise invalid_field("payload.body", "must be a string")
    default = _parse_address(default_sender, "SMTP_FROM")
    sender = _parse_address(payload.get("from", default_sender), "payload.from")
    allowed = {domain.lower() for domain in allowed_from_domains}
    if sender.addr_spec.lower() != default.addr_spec.lower() and sender.domain.lower() not in allowed:
        where = f"a domain in SMTP_ALLOWED_FROM ({', '.join(sorted(allowed))})" if allowed else "SMTP_ALLOWED_FROM"
        raise invalid_field("payload.from", f"must be {default.addr_spec} or an address of {where}")
    return EmailRequest(
        sender=sender,
        recipients=_parse_recipients(payload.get("recipient")),
        subject=_parse_subject(payload.get("subject")),
        body=body,
    )


def _parse_recipients(value: Any) -> tuple[Address, ...]:
    name = "payload.recipient"
    if value is None:
        raise invalid_field(name, "is required (an email address or a list of them)")
    values = value if isinstance(value, list) else [value]
    if not values or len(values) > MAX_RECIPIENTS:
        raise invalid_field(name, f"give 1 to {MAX_RECIPIENTS} addresses")
    if isinstance(value, list):
        return tuple(_parse_address(item, f"{name}[{i}]") for i, item in enumerate(values))
    return (_parse_address(value, name),)


def _parse_address(value: Any, name: str) -> Address:
    """Accept `user@example.com` or `Display Name <user@example.com>`."""
    if not isinstance(value, str) or not value.isprintable():  # CR/LF are not printable
        raise invalid_field(name, "must be an email address on one line, e.g. user@example.com")
    match = _ADDRESS_RE.fullmatch(value.strip())
    if match is None:
        raise invalid_field(name, f"{value[:200]!r} is not an email address like user@example.com")
    addr_spec = match["bracketed"] or match["bare"]
    local, domain = addr_spec.rsplit("@", 1)
    return Address(display_name=(match["name"] or "").strip(), username=local, domain=domain)


def _parse_subject(value: Any) -> str:
    name = "payload.subject"
    if not isinstance(value, str) or not value.strip():
        raise invalid_field(name, "is required (a non-empty string)")
    if "\r" in value or "\n" in value:
        raise invalid_field(name, "must not contain CR or LF (header injection)")
    if not value.isprintable() or len(value) > MAX_SUBJECT_LEN:
        raise invalid_field(name, f"must be printable text of at most {MAX_SUBJECT_LEN} characters")
    return value


_ADDRESS_TEXT = {"type": "string", "minLength": 3}
EMAIL_PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "recipient": {"anyOf": [_ADDRESS_TEXT,
                                {"type": "array", "items": _ADDRESS_TEXT, "minItems": 1, "maxItems": MAX_RECIPIENTS}]},
        "subject": {"type": "string", "minLength": 1, "maxLength": MAX_SUBJECT_LEN},
        "body": {"type": "string"},
        "from": _ADDRESS_TEXT,
    },
    "required": ["recipient", "subject"],
    "additionalProperties": False,
}


class EmailProcessor:
    """`email`: sends a plain-text message through SMTP, or records it when no SMTP host is set.

    Payload: recipient (address or list), subject (one line), body (optional), from (optional,
    default SMTP_FROM; another address only within the SMTP_ALLOWED_FROM domains). The envelope
    sender (MAIL FROM, where bounces go) is always SMTP_FROM. Sent: {sent: true, recipients, refused, message_id}. Recorded (no
    SMTP_HOST): {sent: false, recorded: {from, recipients, subject, body}}.
    Connection failures and SMTP 4xx are retryable; SMTP 5xx rejections are permanent. Delivery is
    at-least-once: a connection lost after the server took the message leads to a second copy,
    which the X-Jobnode-Job-Id header lets a reader recognise.
    """

    type = "email"
    payload_schema = EMAIL_PAYLOAD_SCHEMA

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        try:
            _parse_address(config.from_address, "SMTP_FROM")
        except PermanentError as exc:  # a configuration mistake, not a job's
            raise ValueError(str(exc)) from None
        # Given explicitly: smtplib's default asks DNS for the FQDN, which can stall a worker thread.
        self._local_hostname = socket.gethostname() or "localhost"

    async def process(self, job: Job) -> Any:
        request = parse_email_request(payload_object(job), self.config.from_address,
                                      self.config.allowed_from_domains)
        if self.config.host is None:
            log.info("email job %s recorded, not sent: SMTP_HOST is not set", job.id)
            return {"sent": False, "recorded": request.describe()}
        message = request.to_message(job.id)
        recipients = [a.addr_spec for a in request.recipients]
        try:
            sender = _parse_address(self.config.from_address, "SMTP_FROM").addr_spec
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
