"""The outbox writer: moves job state changes from the Redis outbox stream into MongoDB.

Every node runs one, as a consumer of the same stream group, so the work spreads over the
cluster and no election is needed. An entry is acknowledged only after MongoDB accepted it;
a writer that crashes leaves its entries pending, and it (on restart) or any other writer
(after they sit idle for a while) picks them up again. Re-applying an entry is harmless:
MongoDB takes a change only if its rev is newer than what it holds.

Entries for the same job in one batch collapse into the newest, so a short job whose
`running` and `completed` changes arrive together costs one update, not two.

A writer that has caught up (its last batch was not full) waits `interval_s`
(`COMMIT_INTERVAL`) before it reads again, so that at a moderate rate the changes gather
into a few batches a second instead of one transaction and journal barrier per job.
SecantusDB serialises a collection's writes, so without the pause the submit inserts that
acknowledgements wait for would queue behind a stream of per-job writes. The pause delays
only the durable record: reads merge the newer Redis state, and the outbox is in Redis
(AOF) meanwhile. Under full load batches come full and the writer never pauses.

A `queue` job (acknowledged once Redis held it) reaches MongoDB through here as well: its
first entry carries its whole record (`doc`), which is upserted, with whatever newer state
the same batch holds over it. Writers read different batches, so a later change of such a
job can reach one writer before another has written its insert: the change then matches no
document. It is not acknowledged but held (left pending and read again shortly) as long as
Redis still holds the job as a `queue` job, so the job cannot be forgotten in Redis before
MongoDB has its record, and no change of it is dropped. A change of a job that is in neither
(deleted meanwhile) is acknowledged and dropped, as before.

A writer killed inside a MongoDB transaction leaves it open on the server, and the
documents it touched refuse every other write for a minute (the server's transaction
lifetime). So each writer keeps one MongoDB session for life and records its id in Redis;
whoever takes over a dead writer's entries (another writer, or the same node restarted)
first kills that session, which aborts the transaction at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from pymongo import errors as mongo_errors
from pymongo.asynchronous.client_session import AsyncClientSession

from jobnode.core.background import Backoff
from jobnode.core.errors import Unavailable
from jobnode.core.record import decode_document, decode_snapshot
from jobnode.storage.mongo.jobs import JobStore, Snapshot, WriteConflicts
from jobnode.storage.redis.outbox_stream import Entry
from jobnode.storage.redis.queue import JobQueue

# A dead writer's unacknowledged entries are claimed by a live one after this idle time.
# Short, because until then the dead writer's jobs lag in MongoDB (reads merge the Redis
# state, so clients do not see the lag, but the durable record does): a claim that catches
# a slow but live writer only makes both write the same entries, and MongoDB applies each
# rev once. 5 s is well above a normal batch write, so in steady state nothing is doubled.
CLAIM_IDLE_MS = 5_000
CLAIM_EVERY_S = 2.0
# After a failed batch the writer waits from 0.5 s, doubling up to 5 s, with jitter: every
# node's writer meets the same outage, and retrying in step (or at once) would land on a
# store that is just coming back all together. 5 s is small beside the recovery bound
# (docs/architecture.md).
RETRY_AFTER_FAILURE_S = 0.5
RETRY_AFTER_FAILURE_MAX_S = 5.0
# How soon a writer reads again the changes it held back for an insert another writer has.
HELD_RETRY_S = 0.02

log = structlog.get_logger(__name__)


def to_snapshot(fields: dict[str, str], document: Any = None) -> Snapshot:
    """One outbox entry (Redis field names, str keys) as the change MongoDB is to apply.

    `document`: the `doc` of the job's first entry (a `queue` job), when the batch holds it."""
    decoded = decode_snapshot(fields)
    decoded.pop("rev")
    if document is None:
        document = fields.get("doc")
    return Snapshot(id=fields["id"], rev=int(fields["rev"]), fields=decoded,
                    document=decode_document(document) if document else None)


def collapse(entries: Sequence[Entry]) -> list[Snapshot]:
    """The newest snapshot per job among these entries.

    Only the newest entry of each job is decoded in full: a short job's `running` entry
    is outdated by its `completed` one in the same batch, and in a drain decoding every
    entry costs the node a noticeable share of its time."""
    newest: dict[Any, tuple[int, dict[Any, Any]]] = {}
    documents: dict[Any, Any] = {}  # a `queue` job's record, from its first entry
    for _, raw in entries:
        job_id, rev = _field(raw, "id"), int(_field(raw, "rev"))
        if job_id not in newest or newest[job_id][0] < rev:
            newest[job_id] = (rev, raw)
        document = _field(raw, "doc")
        if document is not None:
            documents[job_id] = document
    return [to_snapshot({_s(k): _s(v) for k, v in raw.items()}, documents.get(job_id))
            for job_id, (_, raw) in newest.items()]


def _field(raw: dict[Any, Any], name: str) -> Any:
    # Entries come with bytes keys from the node's client, str keys from a decoding one.
    value = raw.get(name.encode())
    return raw.get(name) if value is None else value


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class OutboxWriter:
    """One consumer of the outbox stream, writing batches to MongoDB."""

    def __init__(self, queue: JobQueue, store: JobStore, consumer: str, *, max_batch: int,
                 interval_s: float = 0.0, claim_idle_ms: int = CLAIM_IDLE_MS) -> None:
        self.queue = queue
        self.store = store
        self.consumer = consumer
        self.max_batch = max_batch
        self.interval_s = interval_s
        self.claim_idle_ms = claim_idle_ms
        self.stream = queue.outbox
        self.written = 0
        self.held = 0  # changes of the last batch left pending: their job's insert is not written yet
        self._session: AsyncClientSession | None = None

    async def run(self) -> None:
        """Drain forever; survives Redis or MongoDB outages by retrying."""
        backlog = True  # our own unacknowledged entries from before a crash come first
        loop = asyncio.get_running_loop()
        next_claim = loop.time()
        backoff = Backoff(base_s=RETRY_AFTER_FAILURE_S, max_s=RETRY_AFTER_FAILURE_MAX_S)
        while True:
            try:
                await self.ensure_group()
                if loop.time() >= next_claim:
                    next_claim = loop.time() + CLAIM_EVERY_S
                    backlog = await self.claim_abandoned() or backlog
                count = await self.drain_once("0" if backlog else ">")
                backoff.reset()
                backlog = (backlog and count > 0) or self.held > 0
                if self.held:
                    await asyncio.sleep(max(self.interval_s, HELD_RETRY_S))
                elif 0 < count < self.max_batch:
                    await asyncio.sleep(self.interval_s)  # caught up: let the next batch gather
            except (Unavailable, WriteConflicts) as exc:
                log.warning("outbox.write_failed", error=str(exc))
                backlog = True
                if isinstance(exc, WriteConflicts):  # maybe a dead writer's open transaction:
                    next_claim = loop.time()  # its session is killed as soon as it looks dead
                await asyncio.sleep(backoff.next_s())

    async def ensure_group(self) -> None:
        await self.stream.ensure_group()

    async def drain_once(self, start_id: str, block_ms: int | None = 200) -> int:
        """Read one batch (">" new entries, "0" our pending ones) and write it; returns its size."""
        entries = await self._read(start_id, block_ms)
        if entries:
            await self.write(entries)
        return len(entries)

    async def write(self, entries: Sequence[Entry]) -> None:
        snapshots = collapse(entries)
        applied = await self.store.write_changes(snapshots, await self.mongo_session())
        held = set(await self.queue.awaiting_insert(applied.missing)) if applied.missing else set()
        if held:  # their inserts are with another writer: read again shortly (see the module's doc)
            entries = [(entry_id, raw) for entry_id, raw in entries if _s(_field(raw, "id")) not in held]
            snapshots = [s for s in snapshots if s.id not in held]
            log.debug("outbox.held", jobs=len(held))
        self.held = len(held)
        if entries:
            await self.stream.ack([entry_id for entry_id, _ in entries])
        await self.queue.forget((s.id, s.rev) for s in snapshots if s.is_terminal)
        self.written += len(snapshots)

    async def flush(self, timeout_s: float) -> int:
        """Write what is waiting now (at shutdown), within a time limit; returns entries written."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        written = 0
        try:
            await self.ensure_group()  # the node may stop before run() ever created it
            for start_id in ("0", ">"):
                while loop.time() < deadline:
                    count = await self.drain_once(start_id, block_ms=None)
                    written += count - self.held
                    if count == self.held:  # nothing, or only changes whose insert another writer has
                        break
        except (Unavailable, WriteConflicts) as exc:
            log.warning("outbox.flush_failed", error=str(exc), note="entries stay in Redis for the next writer")
        return written

    async def mongo_session(self) -> AsyncClientSession:
        """This writer's MongoDB session, recorded in Redis; a predecessor's is killed first."""
        if self._session is None:
            session = self.store.start_session()
            mine = bytes(session.session_id["id"])
            previous = await self.stream.record_session(self.consumer, mine)
            if previous is not None and previous != mine:  # this node, before a restart
                await self._kill_sessions([previous])
            self._session = session
        return self._session

    async def _kill_sessions(self, session_ids: list[bytes]) -> None:
        try:
            await self.store.kill_sessions(session_ids)
        except mongo_errors.OperationFailure as exc:  # e.g. a user without killAnySession
            log.warning("outbox.kill_sessions_refused", error=str(exc),
                        note="a dead writer's transaction holds its jobs until the server drops it")

    async def claim_abandoned(self) -> bool:
        """Take over entries another writer read but never acknowledged (it likely died)."""
        stale = await self.stream.silent_sessions(self.consumer, min_idle_ms=self.claim_idle_ms)
        if stale:
            await self._kill_sessions(stale)
        return await self.stream.claim(self.consumer, min_idle_ms=self.claim_idle_ms, count=self.max_batch)

    async def _read(self, start_id: str, block_ms: int | None) -> list[Entry]:
        block = None if start_id == "0" else block_ms  # None: answer at once
        return await self.stream.read(self.consumer, start_id, count=self.max_batch, block_ms=block)
