"""An event as subscribers see it: its stream id, its name and its JSON data.

Names:
  job.submitted  job.started  job.progress  job.failed (an attempt failed)
  job.retrying (it will run again)  job.completed  job.dead (failed for good)
  job.cancelled  node.joined  node.left  node.down  leader.changed
and stream.gap, which the stream itself sends to a subscriber that missed events.
A job's last event is one of TERMINAL: job.completed, job.dead or job.cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

JOB_EVENTS = ("job.submitted", "job.started", "job.progress", "job.failed", "job.retrying", "job.completed",
              "job.dead", "job.cancelled")
CLUSTER_EVENTS = ("node.joined", "node.left", "node.down", "leader.changed")
EVENT_NAMES = JOB_EVENTS + CLUSTER_EVENTS
TERMINAL = frozenset({"job.completed", "job.dead", "job.cancelled"})
STREAM_GAP = "stream.gap"
# A job without a queue of its own is in this one.
DEFAULT_QUEUE = "default"

# Fields the scripts write as numbers; everything else stays text.
_INTEGERS = frozenset({"attempt", "workers", "token", "duration_ms", "retry_at_ms", "due_ms", "priority"})
_FLOATS = frozenset({"fraction"})
# Labels used for filtering and visibility, not shown in the data as such.
_LABELS = frozenset({"event", "sub"})


@dataclass(frozen=True)
class Event:
    """One event. `owner` is the submitter of its job (for per-user visibility), never shown."""

    id: str
    name: str
    data: dict[str, Any]
    job: str | None = None
    type: str | None = None
    queue: str | None = None
    owner: str | None = None
    _frame: list[bytes] = field(default_factory=list, repr=False, compare=False)

    @property
    def terminal(self) -> bool:
        return self.name in TERMINAL

    @property
    def frame(self) -> bytes:
        """The event in text/event-stream form, encoded once however many subscribers get it."""
        if not self._frame:
            # An event made up from a stored record has no stream id: it sends none.
            head = b"id: %s\n" % self.id.encode() if self.id else b""
            self._frame.append(head + b"event: %s\ndata: %s\n\n" % (self.name.encode(), orjson.dumps(self.data)))
        return self._frame[0]


def stream_id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def decode_event(entry_id: str, fields: dict[str, str]) -> Event:
    """An entry of P:events (see jobnode/storage/redis/event_stream.py) as an Event."""
    data: dict[str, Any] = {}
    for name, raw in fields.items():
        if name in _LABELS or raw == "":
            continue
        if name in _INTEGERS:
            data[name] = _number(raw, int)
        elif name in _FLOATS:
            data[name] = _number(raw, float)
        else:
            data[name] = raw
    job = fields.get("job") or None
    queue = None
    if job is not None:
        queue = data.setdefault("queue", DEFAULT_QUEUE)
    at = datetime.fromtimestamp(stream_id_ms(entry_id) / 1000, tz=timezone.utc)
    data["at"] = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return Event(id=entry_id, name=fields.get("event", ""), data=data, job=job, type=data.get("type"),
                 queue=queue, owner=fields.get("sub") or None)


def _number(raw: str, kind: type) -> Any:
    try:
        return kind(float(raw)) if kind is int else kind(raw)
    except ValueError:
        return raw
