"""Where a reconnecting subscriber resumes, and whether it missed events meanwhile.

A pure decision on stream ids ("<ms>-<seq>", growing monotonically) and the stream's bounds
now. Events after the client's last id are replayed if the stream still holds all of them;
if some were trimmed away (the client was gone longer than the retention) the client is told
with a stream.gap and resumes from the oldest event still held.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobnode.core.errors import ValidationError
from jobnode.storage.redis.event_stream import StreamBounds


@dataclass(frozen=True)
class ResumePoint:
    after_id: str  # replay the events after this id
    gap: bool  # events after the client's last id were trimmed before it came back


def parse_id(text: str, field: str = "Last-Event-ID") -> tuple[int, int]:
    """A stream id as a comparable pair; ValidationError naming `field` when it is not one."""
    ms, _, seq = text.strip().partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()) or len(text) > 40:
        raise ValidationError(field, "must be an event id as the stream sent it, such as 1733325386123-0")
    return int(ms), int(seq or 0)


def resume_point(last_id: str, bounds: StreamBounds) -> ResumePoint:
    """Where to resume after `last_id` (already validated with parse_id)."""
    last = parse_id(last_id)
    if bounds.first_id is None:
        # Empty: everything written after last_id (if anything was) is gone.
        return ResumePoint(bounds.last_id, gap=last < parse_id(bounds.last_id))
    if last < parse_id(bounds.first_id):
        # The oldest entry held is newer than what the client saw: what lay between may have
        # been trimmed. Redis does not record what trimming removed (max-deleted-entry-id
        # counts XDEL only), so this errs towards a gap: the client may resync once more
        # than needed, but never silently misses an event.
        return ResumePoint(_before(bounds.first_id), gap=True)
    return ResumePoint(last_id, gap=False)


def _before(entry_id: str) -> str:
    """The greatest id below `entry_id`, so replaying "after" it starts at `entry_id`."""
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq - 1}" if seq > 0 else f"{ms - 1}-{2**64 - 1}" if ms > 0 else "0-0"


def id_before_ms(ms: int) -> str:
    """An id just below every event of millisecond `ms` (replay from that instant on)."""
    return f"{ms - 1}-{2**64 - 1}" if ms > 0 else "0-0"


def is_after(a: str, b: str) -> bool:
    return parse_id(a) > parse_id(b)
