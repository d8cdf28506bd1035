"""The MongoDB store: the durable record of jobs (and, later, nodes, elections and metrics).

Indexes are paid on every insert (on the embedded SecantusDB each secondary index costs a
large share of insert throughput), so `jobs` has only those a query needs:
  status_created_id {status, created_at desc, _id desc}: list by status newest first (a
                   time window of one status, ties by id, is one range of it: see
                   `JobStore.list`), the counts of unfinished statuses, and the reconciler's scan.
                   It replaces status_created ({status, created_at desc}), dropped at start.
  type_created     {type, created_at desc}: list by type newest first.
  created          {created_at desc}: list everything newest first (the default view), and
                   the time windows of a listing whose filters no compound index covers.
  idempotency_key  unique, partial (only jobs that carry a key, so unkeyed submits skip
                   it): the database itself refuses a second job with the same key.
  submitter_created {submitted_by, created_at desc}, partial (only jobs with a submitter,
                   so with auth off inserts skip it): a user's own jobs, newest first.
  expiry           {expire_at}, sparse: only finished jobs whose retention is not 0 carry the
                   field (a date), so the leader's retention sweep (`delete_expired`) reads
                   and deletes the expired ones as one short range of it. Not a TTL index:
                   SecantusDB's TTL monitor reads and decodes every record of the collection
                   under its storage lock once a minute, and each write waited for that (about
                   1.2 s with 60,000 records). Not a partial index either: SecantusDB's planner
                   does not use one for `$lt`, and scans. It replaces the TTL index `expire_at`,
                   dropped at start.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from pymongo import ASCENDING, DESCENDING, IndexModel, ReadPreference, UpdateOne, WriteConcern
from bson.binary import UUID_SUBTYPE, Binary
from pymongo import errors as mongo_errors
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase

from jobnode.core.background import Backoff
from jobnode.core.errors import ValidationError
from jobnode.core.job import STATUSES, TERMINAL, Job, from_epoch_ms
from jobnode.core.retention import DEFAULT_RETENTION_S, expire_at
from jobnode.storage.mongo.boundary import UNREACHABLE, mongo_boundary, unavailable
from jobnode.storage.mongo.indexes import drop_replaced
from jobnode.storage.mongo.journal import JournalCover

DUPLICATE_KEY = 11000
ILLEGAL_OPERATION = 20  # what a standalone mongod answers to a transaction
TRANSACTION_ATTEMPTS = 3
CONFLICT_BACKOFF_S = 0.01
# Journaled writes: an acknowledged write survives a kill -9 of the database server
# (without j, SecantusDB and mongod can lose the last ~100 ms of writes). Majority: on a
# replica set an acknowledged job is on most members and survives a failover of the primary;
# on a single member it costs nothing more than w=1.
JOURNALED = WriteConcern(w="majority", j=True)
# pymongo's read preferences by the names MONGODB_READ_PREFERENCE takes.
READ_PREFERENCES = {
    "primary": ReadPreference.PRIMARY, "primaryPreferred": ReadPreference.PRIMARY_PREFERRED,
    "secondary": ReadPreference.SECONDARY, "secondaryPreferred": ReadPreference.SECONDARY_PREFERRED,
    "nearest": ReadPreference.NEAREST,
}

# One document, written journaled after each transaction: see JobStore._journal_barrier.
BARRIER_COLLECTION = "journal_barrier"
BARRIER_ID = "transactions"

JOB_INDEXES = [
    IndexModel([("status", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="status_created_id"),
    IndexModel([("type", ASCENDING), ("created_at", DESCENDING)], name="type_created"),
    IndexModel([("created_at", DESCENDING)], name="created"),
    IndexModel(
        [("idempotency_key", ASCENDING)],
        name="idempotency_key",
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    ),
    IndexModel([("expire_at", ASCENDING)], name="expiry", sparse=True),
    IndexModel(
        [("submitted_by", ASCENDING), ("created_at", DESCENDING)],
        name="submitter_created",
        partialFilterExpression={"submitted_by": {"$type": "string"}},
    ),
]


@dataclass(frozen=True)
class Snapshot:
    """A job's mutable fields as of one state change, on their way to MongoDB."""

    id: str
    rev: int
    fields: dict[str, Any]
    # The whole record of a job MongoDB may not hold yet (durability `queue`): inserted if absent.
    document: dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        return self.fields.get("status") in TERMINAL


class DuplicateIdempotencyKey(Exception):
    """Another job already carries this idempotency key."""


@dataclass(frozen=True)
class Applied:
    """What a batch of state changes did: documents modified, and jobs whose document is missing."""

    modified: int
    missing: list[str]


class WriteConflicts(Exception):
    """A batch kept conflicting with another session's open transaction; try it again later."""


class JobStore:
    """Reads and writes job records; every write that changes state is guarded by rev."""

    def __init__(self, db: AsyncDatabase, *, transactions: bool | None = None,
                 stale_reads: str = "primary", retention_s: Mapping[str, float] | None = None,
                 retention_by_type_s: Mapping[str, float] | None = None) -> None:
        """`transactions`: None uses them for batches if the server has them, False never.
        `retention_s` and `retention_by_type_s`: how long finished jobs are kept (jobnode.core.retention).

        `stale_reads` (MONGODB_READ_PREFERENCE): where listings and counts may read. They already
        trail Redis by the outbox delay, so a secondary a second behind changes nothing a reader
        can rely on; a read by id or idempotency key, the reconciler's scan and every write stay
        on the primary, since they decide what happens to a job."""
        self.db = db
        self.retention_s = dict(DEFAULT_RETENTION_S if retention_s is None else retention_s)
        self.retention_by_type_s = dict(retention_by_type_s or {})
        self.jobs = db.get_collection("jobs", write_concern=JOURNALED)
        self.listed_jobs = db.get_collection("jobs", read_preference=READ_PREFERENCES[stale_reads])
        self.barrier = db.get_collection(BARRIER_COLLECTION, write_concern=JOURNALED)
        self.transactions = transactions  # None until the first batch found out
        # The journaled writes this store sends, so that a committed batch can let a later
        # one sync it instead of writing a barrier of its own (see `_journal_barrier`).
        self.journal = JournalCover()

    @mongo_boundary
    async def ensure_indexes(self) -> None:
        existing = await self.jobs.index_information()
        if "expire_at" in existing:
            # Records written before the sweep carry `expire_at: null` while unfinished; in the
            # sparse index those nulls would lie in the sweep's way. Once, with the old index.
            await self.jobs.update_many({"expire_at": {"$type": "null"}}, {"$unset": {"expire_at": ""}})
        await self.jobs.create_indexes(JOB_INDEXES)
        await drop_replaced(self.jobs, ["status_created", "expire_at"], existing)

    @mongo_boundary
    async def insert_many(self, jobs: Sequence[Job]) -> list[Exception | None]:
        """Insert jobs in one round trip; per job, None or the exception that refused it.

        A job already stored under its own id counts as inserted: ids are minted by
        `Job.new` (uuid4), so only an earlier attempt of this same write can have stored it
        (a retry whose first reply was lost, the driver's or ours). That makes it safe to
        send the write once more when its connection failed and the driver does not retry
        writes itself (retryWrites=false, as on the embedded SecantusDB: see
        `EmbeddedMongo.url`). Without that, a job the client was told had failed would sit
        in MongoDB and run once the reconciler found it."""
        documents = [job.to_document() for job in jobs]
        try:
            return await self._insert(jobs, documents)
        except mongo_errors.AutoReconnect as exc:
            if self.db.client.options.retry_writes or isinstance(exc, mongo_errors.ServerSelectionTimeoutError):
                raise  # the driver has retried already, or the write never left
            return await self._insert(jobs, documents)

    async def _insert(self, jobs: Sequence[Job], documents: list[dict[str, Any]]) -> list[Exception | None]:
        outcome: list[Exception | None] = [None] * len(jobs)
        ticket = self.journal.begin()
        synced = False
        try:
            await self.jobs.insert_many(documents, ordered=False)
            synced = True
        except mongo_errors.BulkWriteError as exc:
            clashes: dict[str, int] = {}
            for err in exc.details.get("writeErrors", []):
                index, duplicate = err["index"], err.get("code") == DUPLICATE_KEY
                if duplicate:
                    clashes[jobs[index].id] = index
                if duplicate and jobs[index].idempotency_key:
                    outcome[index] = DuplicateIdempotencyKey(jobs[index].idempotency_key)
                else:
                    outcome[index] = RuntimeError(err.get("errmsg", "insert refused"))
            # The server may name the _id or the idempotency key index for a job it holds
            # already (SecantusDB names the key): whether the job's own id is stored decides.
            if clashes:
                async for doc in self.jobs.find({"_id": {"$in": list(clashes)}}, {"_id": 1}):
                    outcome[clashes[doc["_id"]]] = None
        finally:
            # Only a write the server took whole counts as synced: one it refused in part
            # may have committed nothing, and so synced nothing.
            self.journal.end(ticket, synced=synced)
        return outcome

    @mongo_boundary
    async def get(self, job_id: str) -> Job | None:
        doc = await self.jobs.find_one({"_id": job_id})
        return Job.from_document(doc) if doc else None

    @mongo_boundary
    async def get_by_idempotency_key(self, key: str) -> Job | None:
        doc = await self.jobs.find_one({"idempotency_key": key})
        return Job.from_document(doc) if doc else None

    @mongo_boundary
    async def list(
        self, *, status: str | None, type_: str | None, limit: int, cursor: str | None,
        submitted_by: str | None = None, queue: str | None = None, job_id: str | None = None,
        idempotency_key: str | None = None, now: datetime | None = None,
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first; the cursor is opaque to clients (created_at and id of the last).

        `job_id` and `idempotency_key` each match at most one job (through `_id` and the unique
        key index); the other filters combine with them as with each other. `queue` has no index
        of its own: an index on it cost 10-35% of the insert rate on SecantusDB, so a page of one
        queue walks the newest-first time windows below through the `created` index.

        A page is read in time windows, newest first (see `time_windows`), not as one sorted
        query over the whole history. SecantusDB answers `find(f).sort(s).limit(n)` by fetching
        and sorting every document the index range holds and only then cutting at n, even when
        the index is in the sort's order (measured with 100,000 finished jobs: 3.2 s for the
        first page of one status, 11.6 s unfiltered, 5.4 s for a later page, whose `$or` cursor
        condition it serves with a collection scan). A bounded range on `created_at` is the one
        thing it narrows well: it costs about the documents inside (an empty window ~1 ms, 200
        jobs ~11 ms). So each window is its own query, bounded on both sides, and the page is
        complete once enough jobs are found; on mongod the same queries are index range scans
        that stop at the limit. A later page starts with the jobs that share the cursor's
        created_at (equality there, then `_id` below the cursor's), then windows below it.

        `now` anchors the first window of a first page (tests pin it); jobs created after it
        (a node whose clock runs ahead) are still listed, because that window has no upper bound.
        """
        base: dict[str, Any] = {}
        if job_id is not None:
            base["_id"] = job_id
        if idempotency_key is not None:
            base["idempotency_key"] = idempotency_key
        if queue:
            base["queue"] = queue
        if submitted_by is not None:
            base["submitted_by"] = submitted_by
        if status:
            base["status"] = status
        if type_:
            base["type"] = type_
        after = decode_cursor(cursor) if cursor else None
        wanted = limit + 1  # one more than the page says whether another page follows
        if job_id is not None or idempotency_key is not None:
            # At most one job matches: no history to walk.
            jobs = [job for job in await self._find_sorted(base, wanted) if _before(job, after)]
        else:
            jobs = await self._find_in_windows(base, wanted, after, now or datetime.now(timezone.utc))
        next_cursor = encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
        return jobs[:limit], next_cursor

    async def _find_in_windows(self, base: dict[str, Any], wanted: int, after: tuple[datetime, str] | None,
                               now: datetime) -> list[Job]:
        jobs: list[Job] = []
        if after is not None:
            created_at, last_id = after
            # Ties at the cursor's millisecond first; SecantusDB serves `created_at` equal plus a
            # range on `_id` from status_created_id, or from `created` with the rest matched.
            jobs += await self._find_sorted({"created_at": created_at, **base, "_id": {"$lt": last_id}}, wanted)
        top = after[0] if after is not None else now
        for newer_s, older_s in time_windows(lambda: len(jobs), wanted):
            # `created_at` leads the filter: when no compound index covers the other fields,
            # SecantusDB serves the first indexable clause, and that must be the bounded range.
            bounds: dict[str, Any] = {}
            if older_s is not None:
                # `$gt` a millisecond earlier, not `$gte`: the same for BSON dates (whole
                # milliseconds), and SecantusDB 0.7 drops the jobs equal to a `$gte` bound when
                # it reads the range through status_created_id, where created_at is not last.
                bounds["$gt"] = _whole_ms(top - timedelta(seconds=older_s)) - ONE_MS
            if after is not None or newer_s > 0:
                bounds["$lt"] = _whole_ms(top - timedelta(seconds=newer_s))
            query = {"created_at": bounds, **base} if bounds else dict(base)
            jobs += await self._find_sorted(query, wanted - len(jobs))
        return jobs[:wanted]

    async def _find_sorted(self, query: dict[str, Any], limit: int) -> list[Job]:
        found = self.listed_jobs.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit)
        return [Job.from_document(doc) async for doc in found]

    def start_session(self) -> AsyncClientSession:
        """A session for a writer to keep; its `session_id` can later end its transactions."""
        return self.db.client.start_session()

    @mongo_boundary
    async def kill_sessions(self, session_ids: Sequence[bytes]) -> None:
        """Abort the open transactions of these sessions (their owners died mid-write).

        A client killed inside a transaction leaves it open, holding every document it
        touched, until the server gives up on it (transactionLifetimeLimitSeconds, 60 s on
        mongod and on SecantusDB); until then every other write to those documents conflicts."""
        if session_ids:
            ids = [{"id": Binary(raw, UUID_SUBTYPE)} for raw in session_ids]
            await self.db.client.admin.command({"killSessions": ids})

    async def apply(self, snapshots: Sequence[Snapshot], session: AsyncClientSession | None = None) -> int:
        """Write state changes (see `write_changes`); the number of documents modified."""
        return (await self.write_changes(snapshots, session)).modified

    @mongo_boundary
    async def write_changes(self, snapshots: Sequence[Snapshot],
                            session: AsyncClientSession | None = None) -> Applied:
        """Write state changes, each only if it is newer than what MongoDB holds.

        A snapshot with a `document` is inserted when MongoDB lacks the job (an upsert); one
        without changes only a stored job, and `missing` names those whose job is not stored
        (deleted, or a `queue` job whose insert another writer has not written yet).

        A batch goes in one multi-document transaction where the server has them: outside one,
        SecantusDB commits every update of a bulk_write on its own, and under a steady stream
        of completions those per-update commits dominate its time. When this returns
        the batch is journaled, like the collection's own writes (see `_journal_barrier`:
        SecantusDB needs one more write for that). A server without transactions
        (a standalone mongod) gets the plain bulk_write, decided at the first batch.

        Even a single change goes in a transaction: a plain write to a document that a dead
        writer's open transaction holds waits inside the server until that transaction ends,
        where a transaction's conflict comes back at once (as WriteConflicts) and lets the
        writer find and kill the dead session. A long-lived writer passes its own `session`
        (see `kill_sessions`)."""
        if not snapshots:
            return Applied(0, [])
        ops = [_guarded_update(s, self._expire_at(s)) for s in snapshots]
        result = None
        if self.transactions is not False:
            try:
                result = await self._apply_in_transaction(ops, session)
            except (mongo_errors.ConfigurationError, mongo_errors.InvalidOperation,
                    mongo_errors.OperationFailure) as exc:
                if not _transactions_unsupported(exc) or self.transactions:
                    raise
                self.transactions = False
            else:
                self.transactions = True
                await self._journal_barrier(self.journal.mark())
        if result is None:
            result = await self.jobs.bulk_write(ops, ordered=False)
        return Applied(result.modified_count, await self._missing(snapshots, result))

    async def _missing(self, snapshots: Sequence[Snapshot], result: Any) -> list[str]:
        # Every upsert either matched its job or inserted it; the plain updates that matched
        # are the rest of matched_count. Only when some did not is the store asked which.
        plain = [s.id for s in snapshots if s.document is None]
        upserts = len(snapshots) - len(plain)
        if result.matched_count - (upserts - result.upserted_count) >= len(plain):
            return []
        stored = {doc["_id"] async for doc in self.jobs.find({"_id": {"$in": plain}}, {"_id": 1})}
        return [job_id for job_id in plain if job_id not in stored]

    async def _apply_in_transaction(self, ops: list[UpdateOne], session: AsyncClientSession | None) -> Any:
        if session is None:
            async with self.db.client.start_session() as temporary:
                return await self._apply_in_transaction(ops, temporary)
        conflict_backoff = Backoff(base_s=CONFLICT_BACKOFF_S, max_s=CONFLICT_BACKOFF_S * 4)
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                async with await session.start_transaction(write_concern=JOURNALED):
                    result = await self.jobs.bulk_write(ops, ordered=False, session=session)
                return result
            except mongo_errors.ConnectionFailure:
                raise  # Unavailable at the boundary: the caller retries the batch later
            except mongo_errors.PyMongoError as exc:
                # A write conflict with another writer: the whole batch again, a few times
                # (not pymongo's with_transaction, which keeps at it for two minutes).
                if not exc.has_error_label("TransientTransactionError"):
                    raise
                if attempt == TRANSACTION_ATTEMPTS:
                    raise WriteConflicts(
                        f"{len(ops)} changes met another session's transaction {attempt} times "
                        f"({exc.code}: {exc.__class__.__name__})") from exc
                # Writers that collided and retried at once would collide again: a short,
                # jittered pause lets one of them commit first.
                await asyncio.sleep(conflict_backoff.next_s())
        raise AssertionError("unreachable")

    def _expire_at(self, snapshot: Snapshot) -> datetime | None:
        """When a job in this state may go: its finish time plus its retention; None while it is
        not finished (an admin retry takes a finished job's date away again) or kept forever."""
        fields = snapshot.fields
        finished_at = fields.get("finished_at")
        if not snapshot.is_terminal or not isinstance(finished_at, datetime):
            return None
        return expire_at(finished_at, fields["status"], fields.get("type") or "", self.retention_s,
                         self.retention_by_type_s)

    async def _journal_barrier(self, mark: int) -> None:
        """Make the transactions committed before `mark` survive a crash of the server.

        SecantusDB 0.7 commits a multi-document transaction without syncing its journal,
        whatever the write concern says: killed with SIGKILL a moment later, it comes back
        without some of the acknowledged commits (tests/chaos/test_store_durability.py
        shows it). Its journal is one sequential log, so one journaled
        single write after the commit syncs everything before it too. Only after that may
        the outbox let Redis forget a finished job. While submissions flow, a journaled
        insert sent after the commit is that write (jobnode/storage/mongo/journal.py); else
        it is a small write of its own here. On mongod, which honours j on the commit, this
        costs at most that one small write per batch."""
        if await self.journal.covered(mark):
            return
        ticket = self.journal.begin(recurring=False)  # a batch's own barrier predicts no insert
        synced = False
        try:
            await self.barrier.update_one({"_id": BARRIER_ID}, {"$inc": {"commits": 1}}, upsert=True)
            synced = True
        finally:
            self.journal.end(ticket, synced=synced)

    @mongo_boundary
    async def delete(self, job_id: str) -> bool:
        return (await self.jobs.delete_one({"_id": job_id})).deleted_count == 1

    @mongo_boundary
    async def delete_expired(self, now: datetime, *, batch: int) -> int:
        """Delete finished jobs whose retention has passed by `now`, the earliest expiries first:
        about `batch` of them (all those sharing the last one's expiry go too). How many went.

        One range of the sparse `expiry` index, found and deleted without a list of ids (an
        `$in` of hundreds of ids is slow on SecantusDB)."""
        due: dict[str, Any] = {"expire_at": {"$lt": now}}
        edge = await self.jobs.find(due, {"expire_at": 1}).sort("expire_at", ASCENDING).skip(batch - 1).limit(1).to_list()
        if edge:
            due = {"expire_at": {"$lte": edge[0]["expire_at"]}}
        return (await self.jobs.delete_many(due)).deleted_count

    @mongo_boundary
    async def delete_unqueued(self, job_ids: Sequence[str]) -> None:
        """Take back inserts whose enqueue failed, unless something already moved them on."""
        await self.jobs.delete_many({"_id": {"$in": list(job_ids)}, "rev": 0, "status": "pending"})

    @mongo_boundary
    async def count_statuses(self, statuses: Sequence[str], *, stale_ok: bool = False) -> dict[str, int]:
        """Jobs in each of these statuses: an index range count each (status_created_id).
        `stale_ok`: the stats' counts, which may read where MONGODB_READ_PREFERENCE says."""
        jobs = self.listed_jobs if stale_ok else self.jobs
        return {status: await jobs.count_documents({"status": status}) for status in statuses}

    async def unfinished_ids(self, *, updated_before: datetime, batch: int) -> AsyncIterator[list[str]]:
        """Ids of the unfinished jobs not touched since `updated_before`, `batch` at a time.

        One cursor for the whole scan, ids only, in the server's order. Paging with sort and
        limit would make the server match the whole backlog again for every page: quadratic
        in it, and on SecantusDB a large backlog scanned that way takes the store's CPU from
        the outbox writers. A job that changes during the scan may be missed or seen twice;
        neither matters, because a stranded job is one nobody writes (so it stays put in any
        index the scan walks) and enqueue is idempotent.
        """
        query: dict[str, Any] = {
            "status": {"$in": [s for s in STATUSES if s not in TERMINAL]},
            "updated_at": {"$lt": updated_before},
        }
        cursor = self.jobs.find(query, {"_id": 1}, batch_size=batch)
        ids: list[str] = []
        try:
            async for doc in cursor:
                ids.append(doc["_id"])
                if len(ids) >= batch:
                    yield ids
                    ids = []
        except UNREACHABLE as exc:  # a generator cannot wear the boundary's decorator
            raise unavailable(exc, "unfinished_ids") from exc
        finally:
            await cursor.close()
        if ids:
            yield ids


def _guarded_update(snapshot: Snapshot, expires: datetime | None = None) -> UpdateOne:
    """Apply the snapshot's fields only if the stored rev is older (an update pipeline).

    The rev test sits in the update, not in the filter: the filter names `_id` alone, which
    SecantusDB serves as a point lookup, where `{_id, rev: {$lt}}` goes through its index
    planner first and makes every update markedly slower. `$literal` keeps a result's own
    `$` keys from being read as operators."""
    fields = {**snapshot.fields, "rev": snapshot.rev}
    if expires is not None:
        fields["expire_at"] = expires
    if snapshot.document is not None:
        # Upserted: an absent job has no rev, which sorts below every number, so it takes
        # the whole record with the newest state over it; a stored one takes that state only
        # if newer, like any change (its immutable fields are the document's own anyway).
        record = {key: value for key, value in snapshot.document.items() if key != "_id"}
        fields = {**record, **fields}
    newer = {"$lt": ["$rev", snapshot.rev]}
    merged: dict[str, Any] = {"$mergeObjects": ["$$ROOT", {"$literal": fields}]}
    if expires is None:
        # No expiry (unfinished, retried, or kept forever): the field goes, it is not set to
        # null, so the record stays out of the sparse `expiry` index and out of the sweep.
        merged = {"$arrayToObject": {"$filter": {"input": {"$objectToArray": merged},
                                                 "cond": {"$ne": ["$$this.k", "expire_at"]}}}}
    return UpdateOne({"_id": snapshot.id}, [{"$replaceWith": {"$cond": [newer, merged, "$$ROOT"]}}],
                     upsert=snapshot.document is not None)


def _transactions_unsupported(exc: Exception) -> bool:
    """The server (or the driver, for this topology) refuses transactions altogether."""
    if isinstance(exc, mongo_errors.OperationFailure):
        return exc.code == ILLEGAL_OPERATION
    return "transaction" in str(exc).lower()


# The first window a listing reads below its start, and how much wider each next one may be.
FIRST_WINDOW_S = 300.0
WINDOW_GROWTH = 4
ONE_MS = timedelta(milliseconds=1)
# Past this age the rest of the history is one open-ended query: a status that has had no job
# for a month is rare, and an empty result must not cost a window per few weeks of calendar.
WINDOWED_SPAN_S = 31 * 86400.0


def time_windows(found: Callable[[], int], wanted: int) -> Iterator[tuple[float, float | None]]:
    """The windows a listing reads, as (newer, older) seconds below its start, newest first.

    Each window begins where the last ended. While windows come back empty each is
    WINDOW_GROWTH times wider than the last, so an empty or quiet stretch costs a few cheap
    queries; once jobs were found, the next width is what the density seen so far says the
    rest of the page needs (twice that, for slack), between the last width and WINDOW_GROWTH
    times it. It stops when `found()` reaches `wanted`; past WINDOWED_SPAN_S one last window
    (older None) takes everything older. The cost is then about the jobs in the windows read:
    proportional to the page when matching jobs are spread back from the start, and larger
    only when a long gap is followed by many jobs at once (the window that crosses from the
    gap into them holds up to WINDOW_GROWTH-1 times the gap's length of them)."""
    newer_s, width_s = 0.0, FIRST_WINDOW_S
    while found() < wanted:
        if newer_s >= WINDOWED_SPAN_S:
            yield newer_s, None
            return
        older_s = newer_s + width_s
        yield newer_s, older_s
        have = found()
        if have:
            per_s = have / older_s
            width_s = min(width_s * WINDOW_GROWTH, max(width_s, 2 * (wanted - have) / per_s))
        else:
            width_s *= WINDOW_GROWTH
        newer_s = older_s


def _whole_ms(moment: datetime) -> datetime:
    """What BSON keeps of a datetime: one window's start is exactly the next one's end."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def _before(job: Job, after: tuple[datetime, str] | None) -> bool:
    """The job sorts after the cursor (older, or as old with a smaller id)."""
    if after is None:
        return True
    return (_whole_ms(job.created_at), job.id) < after


def encode_cursor(job: Job) -> str:
    raw = orjson.dumps([int(job.created_at.timestamp() * 1000), job.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_ms, job_id = orjson.loads(raw)
        if type(created_ms) is not int or not isinstance(job_id, str):
            raise ValueError("bad cursor shape")
        return from_epoch_ms(created_ms), job_id  # type: ignore[return-value]
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ValidationError("cursor", "is not a cursor this server issued") from None
