"""A job's runtime record in Redis: the one declaration of its hash fields, and their codec.

Each field of the `P:job:{id}` hash is declared once here: its name in the hash, how its
value is spelled there (its kind), the `Job` attribute it carries, and the groups it
belongs to. Python encodes and decodes by these declarations, and the Lua scripts get
the groups they need as generated lists (jobnode.storage.redis.scripts), so neither side
knows a field by its position in an argument list or a reply.

The groups:
  ENQUEUED  written from the job's record when it is queued (enqueue.lua)
  RESTORED  written from the record when an admin retries a job Redis forgot (retry.lua)
  SNAPSHOT  a job's mutable state: each change sends these through the outbox to MongoDB,
            and a read merges them over the stored record when Redis's rev is newer
  TAKEN     what a worker gets when it starts the job (take_next in lib.lua)

Fields without a group (`seq`, `queued_ms`, `shown`, `doc`) are the scripts' own bookkeeping.
`dur` says what the job's acknowledgement waited for; a `queue` job (acknowledged once Redis
held it) also carries `doc`, its whole record as MongoDB is to get it (`encode_document`),
which enqueue.lua puts on the outbox with the job's first entry and reads fall back on until
MongoDB holds the job.
The scripts also read `type`, `sub` and `queue` (when a job has one) by name to label the job
events they publish (lib.lua's publish_job).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import orjson

from jobnode.core.job import Job, from_epoch_ms

ENQUEUED, RESTORED, SNAPSHOT, TAKEN = "enqueued", "restored", "snapshot", "taken"


@dataclass(frozen=True)
class Kind:
    """How a value is spelled in the hash: `encode` for a record value, `decode` for hash text."""

    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _text(raw: str | bytes) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


TEXT = Kind("text", lambda value: value or "", _text)
INT = Kind("int", int, int)
JSON = Kind("json", orjson.dumps, orjson.loads)
# An instant as epoch milliseconds on the Redis clock (what the scripts' TIME gives).
MS_TIME = Kind("ms_time", lambda value: int(value.timestamp() * 1000) if value else "",
               lambda raw: from_epoch_ms(int(raw)))
# A duration in milliseconds; the record holds seconds.
MS_SPAN = Kind("ms_span", lambda seconds: int(seconds * 1000), lambda raw: int(raw) / 1000)


@dataclass(frozen=True)
class Field:
    """One field of the job hash."""

    name: str  # in the Redis hash
    kind: Kind
    attribute: str | None  # of `Job`; None for the scripts' own bookkeeping
    groups: frozenset[str]
    # What an absent or empty value stands for, spelled as in the hash ("": the record's None).
    empty: str = ""


def _field(name: str, kind: Kind, attribute: str | None, *groups: str, empty: str = "") -> Field:
    if groups and attribute is None:  # the codec maps every grouped field to the record
        raise ValueError(f"job field {name!r} is in groups {groups} but carries no Job attribute")
    return Field(name, kind, attribute, frozenset(groups), empty)


# Declaration order is the order of every group's list (and of an outbox entry's fields).
FIELDS: tuple[Field, ...] = (
    _field("status", TEXT, "status", SNAPSHOT),
    _field("rev", INT, "rev", ENQUEUED, RESTORED, SNAPSHOT),
    _field("attempts", INT, "attempts", ENQUEUED, SNAPSHOT, TAKEN, empty="0"),
    _field("worker", TEXT, "worker_id", SNAPSHOT),
    _field("node", TEXT, "node_id", SNAPSHOT),
    _field("started_ms", MS_TIME, "started_at", SNAPSHOT),
    _field("finished_ms", MS_TIME, "finished_at", SNAPSHOT),
    _field("result", JSON, "result", SNAPSHOT),
    _field("error", TEXT, "error", SNAPSHOT),
    _field("errors", JSON, "errors", ENQUEUED, RESTORED, SNAPSHOT, empty="[]"),
    _field("updated_ms", MS_TIME, "updated_at", SNAPSHOT),
    # In SNAPSHOT too: a job's final state decides when MongoDB lets it expire, per type.
    _field("type", TEXT, "type", ENQUEUED, RESTORED, TAKEN, SNAPSHOT),
    _field("priority", INT, "priority", ENQUEUED, RESTORED, TAKEN),
    _field("payload", JSON, "payload", ENQUEUED, RESTORED, TAKEN),
    _field("max_retries", INT, "max_retries", ENQUEUED, RESTORED, TAKEN),
    _field("timeout_ms", MS_SPAN, "timeout_s", ENQUEUED, RESTORED, TAKEN),
    _field("rid", TEXT, "request_id", ENQUEUED, TAKEN),
    # Which ready set the job waits in (P:ready:{queue}:{type}); absent in jobs queued before
    # queues existed, which the scripts read as the default queue.
    _field("queue", TEXT, "queue", ENQUEUED, RESTORED, TAKEN, empty="default"),
    # The last progress its processor reported ({fraction, message, at_ms}); written by
    # progress.lua without a state change, so it reaches MongoDB with the next one.
    _field("progress", JSON, "last_progress", SNAPSHOT),
    # Who submitted it: job events carry it so a user's stream shows only their own jobs.
    _field("sub", TEXT, "submitted_by", ENQUEUED, RESTORED),
    _field("tctx", TEXT, "trace_context", ENQUEUED, TAKEN),
    # The schedule that fired the job and the fire time it stands for (jobnode.core.schedules).
    _field("sched", TEXT, "schedule", ENQUEUED, RESTORED),
    _field("sched_for", MS_TIME, "scheduled_for", ENQUEUED, RESTORED),
    # What its acknowledgement waited for: the store (MongoDB first) or the queue (Redis first).
    _field("dur", TEXT, "durability", ENQUEUED, RESTORED, empty="store"),
    # A queue job's record for MongoDB (encode_document), written once at enqueue.
    _field("doc", TEXT, None),
    _field("seq", INT, None),  # submission order within a priority band
    _field("queued_ms", INT, None),  # when the job last became runnable (its wait starts)
    _field("shown", INT, None),  # 1 once MongoDB was told this attempt is running
    # The flow limits' running sets the job holds a place in, space-separated (dispatch.lua
    # sets it, lib.lua's release_limits empties it); absent when no limit applied.
    _field("lim", TEXT, None),
)


def group(name: str) -> tuple[Field, ...]:
    return tuple(f for f in FIELDS if name in f.groups)


def group_names(name: str) -> tuple[str, ...]:
    """The hash field names of a group, in declaration order (what the Lua side gets)."""
    return tuple(f.name for f in group(name))


# Precomputed per group: these run for every job on the hot path.
_Encoder = tuple[str, Callable[[Job], Any], Callable[[Any], Any]]
_Decoder = tuple[str, str, Callable[[Any], Any]]


def _encoders(name: str) -> tuple[_Encoder, ...]:
    return tuple((f.name, attrgetter(f.attribute), f.kind.encode) for f in group(name) if f.attribute)


def _decoders(name: str) -> tuple[_Decoder, ...]:
    return tuple((f.attribute, f.empty, f.kind.decode) for f in group(name) if f.attribute)


_ENCODERS = {name: _encoders(name) for name in (ENQUEUED, RESTORED)}
_SNAPSHOT_DECODERS = _decoders(SNAPSHOT)
_SNAPSHOT_NAMES = group_names(SNAPSHOT)
_TAKEN_DECODERS = _decoders(TAKEN)
# What a reply holds for a field the hash lacks (None) or holds empty.
_ABSENT = (None, "", b"")


def encode_pairs(job: Job, group_name: str) -> list[Any]:
    """The job's fields of `group_name` (ENQUEUED or RESTORED) as flat name, value pairs."""
    pairs: list[Any] = []
    for name, read, encode in _ENCODERS[group_name]:
        pairs += (name, encode(read(job)))
    return pairs


def _decode(decoders: Sequence[_Decoder], values: Iterable[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (attribute, empty, decode), raw in zip(decoders, values):
        if raw in _ABSENT:
            raw = empty
        out[attribute] = None if raw == "" else decode(raw)
    return out


def decode_snapshot(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A job's live Redis state (hash fields or an outbox entry, str keys) as `Job` attributes.

    Every SNAPSHOT field is in the result, rev included; what Redis does not hold is the
    record's empty value (None, or 0 attempts and no errors)."""
    return _decode(_SNAPSHOT_DECODERS, map(fields.get, _SNAPSHOT_NAMES))


def decode_taken(values: Sequence[Any]) -> dict[str, Any]:
    """The TAKEN fields, as take_next returns their values in group order, as `Job` attributes."""
    return _decode(_TAKEN_DECODERS, values)



# A job document's instants, which travel as epoch milliseconds inside `doc`.
_DOCUMENT_TIMES = ("created_at", "updated_at", "started_at", "finished_at", "scheduled_at", "scheduled_for")


def encode_document(job: Job) -> bytes:
    """The job's MongoDB document as `doc` text: JSON, its instants as epoch milliseconds."""
    document = job.to_document()
    for name in _DOCUMENT_TIMES:
        if document.get(name) is not None:
            document[name] = int(document[name].timestamp() * 1000)
    return orjson.dumps(document)


def decode_document(raw: str | bytes) -> dict[str, Any]:
    """`doc` text back as the MongoDB document `encode_document` made it from."""
    document = orjson.loads(raw)
    for name in _DOCUMENT_TIMES:
        if document.get(name) is not None:
            document[name] = from_epoch_ms(document[name])
    return document
