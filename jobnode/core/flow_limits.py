"""Flow limits: how fast and how many jobs of a queue, a type or a user may run, cluster-wide.

A limit has a scope (`queue`, `type` or `user`) and a name (a queue name, a job type, a
username, or `*` for every user without a limit of their own), and any of:
  rate         at most `count` jobs started per second or per minute, spaced evenly
               (one every 1/rate: no bursts, so a controlled run stays controlled)
  concurrency  at most this many jobs assigned or running at once
  paused       no job starts until it is resumed
The leader applies them when it dispatches (dispatch.lua); a job held back stays `pending`.

FLOW_LIMITS, the configuration form, is a `;`-separated list of entries, each a scope:name
followed by its settings, for example:

    queue:media rate=5/s concurrency=2; type:email rate=100/min; user:* concurrency=4; queue:bulk paused
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from jobnode.core.errors import ValidationError
from jobnode.core.queues import QUEUE_NAME_RULE, is_queue_name

SCOPES = ("queue", "type", "user")
PER_MS = {"second": 1000, "minute": 60_000}
# Above these a limit is a typo, not a limit: the dispatch spaces jobs by whole milliseconds.
MAX_RATE = {"second": 1000, "minute": 60_000}
MAX_CONCURRENCY = 100_000
MAX_TYPE_NAME = 100
USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
EVERY_USER = "*"


@dataclass(frozen=True)
class Rate:
    count: int
    per: str  # second | minute

    @property
    def per_ms(self) -> int:
        return PER_MS[self.per]

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "per": self.per}


@dataclass(frozen=True)
class FlowLimit:
    scope: str
    name: str
    rate: Rate | None = None
    concurrency: int | None = None
    paused: bool = False

    @property
    def key(self) -> str:
        return f"{self.scope}:{self.name}"

    @property
    def is_empty(self) -> bool:
        return self.rate is None and self.concurrency is None and not self.paused

    def to_json(self, *, running: int = 0, waiting: int = 0) -> dict[str, Any]:
        return {"scope": self.scope, "name": self.name, "rate": self.rate.to_json() if self.rate else None,
                "concurrency": self.concurrency, "paused": self.paused, "running": running, "waiting": waiting}

    def encode(self) -> dict[str, Any]:
        """The form dispatch.lua reads: n jobs per ms, c at once, p paused (absent: no such limit)."""
        out: dict[str, Any] = {"p": 1 if self.paused else 0}
        if self.rate:
            out["n"], out["ms"] = self.rate.count, self.rate.per_ms
        if self.concurrency is not None:
            out["c"] = self.concurrency
        return out

    @classmethod
    def decode(cls, key: str, data: dict[str, Any]) -> FlowLimit:
        scope, _, name = key.partition(":")
        rate = None
        if "n" in data:
            rate = Rate(int(data["n"]), "second" if int(data["ms"]) == 1000 else "minute")
        return cls(scope, name, rate, data.get("c"), bool(data.get("p")))


def check_target(scope: str, name: str) -> None:
    """Raise ValidationError unless scope and name can carry a limit."""
    if scope not in SCOPES:
        raise ValidationError("scope", f"must be one of {', '.join(SCOPES)}, got {scope!r}")
    if scope == "queue" and not is_queue_name(name):
        raise ValidationError("name", f"must be a queue name: {QUEUE_NAME_RULE}")
    if scope == "type" and not (0 < len(name) <= MAX_TYPE_NAME and ":" not in name and name.strip() == name):
        raise ValidationError("name", f"must be a job type name of 1 to {MAX_TYPE_NAME} characters without ':'")
    if scope == "user" and name != EVERY_USER and not USERNAME.fullmatch(name):
        raise ValidationError("name", "must be a username (1-64 letters, digits, '.', '_', '@' or '-') or * "
                                      "for every user without a limit of their own")


def parse_rate(value: Any, field: str = "rate") -> Rate | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"count", "per"}:
        raise ValidationError(field, 'must be {"count": N, "per": "second" | "minute"} or null')
    per = value.get("per")
    if per not in PER_MS:
        raise ValidationError(f"{field}.per", f"must be second or minute, got {per!r}")
    count = value.get("count")
    high = MAX_RATE[per]
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= high:
        raise ValidationError(f"{field}.count", f"must be an integer from 1 to {high} per {per}, got {count!r}")
    return Rate(count, per)


def parse_concurrency(value: Any, field: str = "concurrency") -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise ValidationError(field, f"must be an integer from 1 to {MAX_CONCURRENCY} or null (pause to stop "
                                     f"a queue altogether), got {value!r}")
    return value


def parse_limit_body(scope: str, name: str, body: Any, *, paused: bool = False) -> FlowLimit:
    """A PUT body {"rate", "concurrency"} for scope/name; `paused` carries over the current state."""
    check_target(scope, name)
    if not isinstance(body, dict):
        raise ValidationError(None, 'the body must be a JSON object {"rate": ..., "concurrency": ...}')
    unknown = sorted(set(body) - {"rate", "concurrency", "paused"})
    if unknown:
        raise ValidationError(unknown[0], f"unknown field {unknown[0]!r}; a limit has rate, concurrency, paused")
    if "paused" in body:
        if not isinstance(body["paused"], bool):
            raise ValidationError("paused", "must be true or false")
        paused = body["paused"]
    return FlowLimit(scope, name, parse_rate(body.get("rate")), parse_concurrency(body.get("concurrency")), paused)


_RATE_TEXT = re.compile(r"(\d{1,9})/(s|sec|second|m|min|minute)")


def parse_flow_limits(text: str) -> tuple[FlowLimit, ...]:
    """Read FLOW_LIMITS (see the module's docstring); ValueError names the entry at fault."""
    found: dict[str, FlowLimit] = {}
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        words = entry.split()
        scope, colon, name = words[0].partition(":")
        try:
            if not colon:
                raise ValidationError(None, "must start with scope:name, such as queue:media")
            check_target(scope, name)
            rate, concurrency, paused = None, None, False
            for word in words[1:]:
                key, eq, value = word.partition("=")
                if word == "paused":
                    paused = True
                elif key == "rate" and eq and (m := _RATE_TEXT.fullmatch(value)):
                    rate = parse_rate({"count": int(m[1]), "per": "second" if m[2].startswith("s") else "minute"})
                elif key == "concurrency" and eq and value.isdigit() and len(value) <= 9:
                    concurrency = parse_concurrency(int(value))
                else:
                    raise ValidationError(None, f"{word!r} is not rate=N/s, rate=N/min, concurrency=N or paused")
        except ValidationError as exc:
            where = f" {exc.field}" if exc.field else ""
            raise ValueError(f"entry {entry!r}:{where} {exc.message}") from None
        limit = FlowLimit(scope, name, rate, concurrency, paused)
        if limit.is_empty:
            raise ValueError(f"entry {entry!r} sets no rate, concurrency or pause")
        if limit.key in found:
            raise ValueError(f"{limit.key} is limited twice")
        found[limit.key] = limit
    return tuple(found.values())


def format_flow_limits(limits: tuple[FlowLimit, ...]) -> str:
    parts = []
    for limit in limits:
        words = [limit.key]
        if limit.rate:
            words.append(f"rate={limit.rate.count}/{'s' if limit.rate.per == 'second' else 'min'}")
        if limit.concurrency is not None:
            words.append(f"concurrency={limit.concurrency}")
        if limit.paused:
            words.append("paused")
        parts.append(" ".join(words))
    return "; ".join(parts)
