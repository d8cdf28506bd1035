"""Structured logging for the node: one renderer for structlog and stdlib loggers, with secrets scrubbed."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from typing import IO, Any

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from jobnode.core.settings import SECRET_MASK, Settings, mask_url_password

# Key names whose values are credentials whatever they hold ("db_password", "X-Auth-Token", "authorization").
SENSITIVE_KEY = re.compile(
    r"passw(or)?d|passphrase|pwd|(^|[_-])pass($|[_-])|secret|token|authori[sz]ation|api[_-]?key|cookie"
    r"|credential|private[_-]?key",
    re.IGNORECASE,
)
# A secret shorter than this is only masked where it is a whole value: replacing every occurrence of,
# say, "pw" inside other text would mangle log lines without protecting anything.
MIN_SUBSTRING_SECRET_CHARS = 6

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
# Drivers whose debug output echoes what they send: pymongo's command log holds whole documents
# (a user's password hash, a job payload's Authorization header), which no redactor can know.
# They log at INFO at most, whatever LOG_LEVEL says.
QUIET_DRIVERS = ("pymongo",)


class SecretRedactor:
    """A structlog processor that replaces credentials in an event with *** before it is rendered."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = {s for s in secrets if s}
        self._exact = frozenset(known)
        # Longest first, so a secret that contains another one is masked whole.
        self._inside = sorted((s for s in known if len(s) >= MIN_SUBSTRING_SECRET_CHARS), key=len, reverse=True)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self._scrub(key, value) for key, value in event_dict.items()}

    def _scrub(self, key: Any, value: Any) -> Any:
        if isinstance(key, str) and SENSITIVE_KEY.search(key) and _holds_text(value):
            return SECRET_MASK
        if isinstance(value, str):
            return self._scrub_text(value)
        if isinstance(value, bytes):
            return self._scrub_text(value.decode("utf-8", "replace"))
        if isinstance(value, dict):
            return {k: self._scrub(k, v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return [self._scrub(None, item) for item in value]
        return value

    def _scrub_text(self, text: str) -> str:
        if text in self._exact:
            return SECRET_MASK
        for secret in self._inside:
            if secret in text:
                text = text.replace(secret, SECRET_MASK)
        return mask_url_password(text)


def _holds_text(value: Any) -> bool:
    # Counts and flags under a key like "tokens_left" are not credentials; text, bytes and containers may be.
    return value is not None and not isinstance(value, (bool, int, float))


def configure_logging(settings: Settings, stream: IO[str] | None = None) -> None:
    """Send structlog and stdlib logging to one handler that renders JSON lines or console text.

    Safe to call again (tests do): the handler installed by an earlier call is replaced.
    """
    level = _LEVELS[settings.log_level]
    redactor = SecretRedactor(settings.secret_values())
    node_id = settings.node_id

    def add_node_id(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        # contextvars carry node_id into tasks created after binding; this covers plain threads too.
        event_dict.setdefault("node_id", node_id)
        return event_dict

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_node_id,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a later configure_logging() (new secrets, new format) must reach existing loggers.
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Exceptions become text here so the redactor sees the message and traceback too.
            structlog.processors.format_exc_info,
            redactor,
            _renderer(settings.log_format, stream or sys.stderr),
        ],
    )
    _install_handler(formatter, level, stream)
    structlog.contextvars.bind_contextvars(node_id=node_id)


def _renderer(log_format: str, stream: IO[str]) -> Processor:
    if log_format == "console":
        is_tty = getattr(stream, "isatty", lambda: False)()
        return structlog.dev.ConsoleRenderer(colors=is_tty)
    return structlog.processors.JSONRenderer(serializer=_dumps)


def _dumps(obj: Any, **_: Any) -> str:
    try:
        return orjson.dumps(obj, default=str).decode()
    except TypeError:  # non-string keys, integers beyond 64 bits: let the slower encoder cope
        return json.dumps(obj, default=str, ensure_ascii=False)


class _JobnodeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The root handler this module installs; its own class lets a reconfiguration find and replace it."""


def _install_handler(formatter: logging.Formatter, level: int, stream: IO[str] | None) -> None:
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _JobnodeHandler)]:
        root.removeHandler(old)
    handler = _JobnodeHandler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_DRIVERS:
        logging.getLogger(name).setLevel(max(level, logging.INFO))


def debug_enabled(logger_name: str) -> bool:
    """Whether a logger's debug lines are rendered: code that runs once per job asks first.

    A debug call that is then dropped still costs about 7 µs, because loggers are not cached
    (see configure_logging) and each call binds a fresh one; per job, that was some 5% of a
    node's CPU in the benchmark's drain."""
    return logging.getLogger(logger_name).isEnabledFor(logging.DEBUG)


def get_logger(name: str | None = None, **initial_values: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger named like a stdlib one (pass __name__), optionally with bound values."""
    return structlog.stdlib.get_logger(name, **initial_values)
