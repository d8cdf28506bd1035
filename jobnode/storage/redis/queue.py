"""The job queue in Redis: typed calls around the Lua scripts that move jobs between states.

Keys (all under the configured prefix P):
  P:job:{id}        hash   the job's runtime state: the fields jobnode.core.record declares
  P:ready:{q}:{t}   zset   ready jobs of queue q and type t (a route) by (priority desc, sequence)
  P:fifo:{q}:{t}    zset   the same jobs by sequence alone
  P:routes          set    the routes "q:t" that may hold ready jobs
  P:delayed         zset   scheduled and retrying jobs by due time (server ms)
  P:leases          zset   assigned/running jobs by lease expiry (server ms)
  P:inbox:{worker}  list   jobs assigned to a worker, in order
  P:wjobs:{worker}  set    every job a worker holds (so a dead worker's jobs can be found)
  P:workers, P:capacity, P:load  hashes  worker -> node, capacity, assigned+running
  P:groups          hash   worker group -> its queues and job types (JSON); see register()
  P:group_size, P:wgroup  hashes  group -> its registered workers; worker -> its group
  P:free:{g}, P:free_rr:{g}  zsets  a group's workers with free capacity (by free slots; by name)
  P:seen            zset   worker heartbeats (server ms)
  P:dead            zset   the dead-letter set: failed jobs by time
  P:outbox          stream state changes waiting to be written to MongoDB (outbox_stream.py)
  P:events          stream job, node and leader events for subscribers (event_stream.py)
  P:log:{id}        list   a job's last log lines (job_logs.py)
  P:leader, P:fence        the fenced leader lease (see lease.py)
  P:leader:last, :previous  its last holder, and the one a takeover found (pauses its workers)
  P:wake            list   a one-token doorbell for the dispatcher
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from jobnode.core.job import QUEUE, Job, to_epoch_ms
from jobnode.core.record import ENQUEUED, RESTORED, decode_taken, encode_document, encode_pairs
from jobnode.storage.redis.boundary import redis_boundary
from jobnode.storage.redis import job_logs
from jobnode.storage.redis.outbox_stream import STREAM, OutboxStream
from jobnode.storage.redis.scripts import DEFAULT_EVENTS_MAX_ENTRIES, Scripts


@dataclass(frozen=True)
class TakenJob:
    """What a worker needs to run a job it has just started."""

    id: str
    type: str
    payload: dict[str, Any]
    attempts: int
    max_retries: int
    timeout_s: float
    priority: int
    wait_s: float | None = None  # queued (or due) until this start, by the Redis clock
    request_id: str | None = None  # of the API request that submitted the job
    queue: str = "default"
    trace_context: str | None = None  # W3C traceparent of the job's submission (tracing on)


@dataclass(frozen=True)
class Report:
    """A worker's outcome for one job, and whether to start its next job in the same call."""

    worker: str
    job_id: str
    outcome: str  # completed | retry | failed
    result: bytes = b""
    error: str = ""
    delay_ms: int = 0  # before a retry
    next_lease_ms: int = 0  # 0: take no next job


@dataclass(frozen=True)
class ProgressReport:
    """How far a worker's running job has come."""

    worker: str
    job_id: str
    fraction: float
    message: str | None = None


@dataclass(frozen=True)
class Enqueued:
    """What an enqueue did: how many jobs it added, and which it started at once, on which worker."""

    added: int
    started: list[tuple[str, TakenJob]]


@dataclass(frozen=True)
class DispatchResult:
    assigned: int
    free_workers: int
    rate_wait_ms: int = 0  # until a rate limit lets a waiting job go (0: no job waits on one)


@dataclass(frozen=True)
class Route:
    """The ready jobs of one queue and type, and whether any registered worker can run them."""

    queue: str
    type: str
    ready: int
    routable: bool


def group_id(queues: Sequence[str], types: Sequence[str] | None) -> tuple[str, str]:
    """A worker group's id and definition: the same queues and types give the same group on any node."""
    definition: dict[str, Any] = {"q": sorted(queues)}
    if types is not None:
        definition["t"] = sorted(types)
    text = orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode()
    return hashlib.sha1(text.encode()).hexdigest()[:16], text


@dataclass(frozen=True)
class ReapResult:
    dead_workers: list[str]
    requeued: int


class JobQueue:
    """Every Redis operation on jobs and workers, each one atomic, and the outbox stream."""

    def __init__(self, redis: Redis, prefix: str, *, events_max_entries: int = DEFAULT_EVENTS_MAX_ENTRIES) -> None:
        self.redis = redis
        self.prefix = prefix
        self.scripts = Scripts(redis, events_max_entries)
        self.outbox = OutboxStream(redis, prefix)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def enqueue(self, jobs: Sequence[Job]) -> int:
        """Queue jobs MongoDB already holds; jobs Redis already has are left alone. How many were added."""
        return (await self.enqueue_or_start(jobs)).added

    @redis_boundary
    async def enqueue_or_start(self, jobs: Sequence[Job], *, idle_workers: Sequence[str] = (),
                               lease_ms: int = 0) -> Enqueued:
        """Queue jobs, starting at once on `idle_workers` (the caller's own) those enqueue.lua
        finds one may take (its local start); the caller must run every job started."""
        if not jobs:
            return Enqueued(0, [])
        # Per job: id, due_ms (0: now), the count of the name/value items that follow, then
        # the ENQUEUED fields as name, value. Flat ARGV and not a JSON object per job: the
        # script hands the items to HSET as they are (unpack of an ARGV range) instead of
        # decoding JSON with a JSON-in-JSON payload and building a table per job.
        args: list[Any] = [self.prefix, lease_ms, len(idle_workers), *idle_workers]
        for job in jobs:
            pairs = encode_pairs(job, ENQUEUED)
            if job.durability == QUEUE and job.rev == 0:  # MongoDB does not hold it yet: the outbox will
                pairs += ("doc", encode_document(job))
            args += (job.id, to_epoch_ms(job.scheduled_at) if job.scheduled_at else 0, len(pairs), *pairs)
        added, *started = await self.scripts.enqueue(args=args)
        return Enqueued(int(added), [(_text(row[0]), _taken(row[1:])) for row in started])

    @redis_boundary
    async def dispatch(
        self, node_id: str, token: int, *, max_jobs: int, strategy: str, lease_ms: int, share_every: int
    ) -> DispatchResult:
        seed = random.randrange(1, 2**31 - 1)
        args = [self.prefix, node_id, token, max_jobs, strategy, lease_ms, share_every, seed]
        assigned, free, wait_ms = await self.scripts.dispatch(args=args)
        return DispatchResult(int(assigned), int(free), int(wait_ms))

    @redis_boundary
    async def reap(self, node_id: str, token: int, *, worker_ttl_ms: int, max_jobs: int = 1000) -> ReapResult:
        dead, moved = await self.scripts.reap(args=[self.prefix, node_id, token, worker_ttl_ms, max_jobs])
        return ReapResult([_text(w) for w in dead], int(moved))

    @redis_boundary
    async def register(self, node_id: str, capacity: int, workers: Sequence[str], *,
                       queues: Sequence[str] = ("default",), types: Sequence[str] | None = None) -> None:
        """Register workers that serve `queues` and run `types` (None: any type, for tools and tests)."""
        group, definition = group_id(queues, types)
        await self.scripts.register(args=[self.prefix, node_id, capacity, group, definition, *workers])

    @redis_boundary
    async def heartbeat(
        self, lease_ms: int, running: Mapping[str, str | None]
    ) -> tuple[list[str], list[str]]:
        """Renew leases; returns (jobs no longer ours, workers that must re-register)."""
        args: list[Any] = [self.prefix, lease_ms]
        for worker, job_id in running.items():
            args += [worker, job_id or ""]
        lost, missing = await self.scripts.heartbeat(args=args)
        return [_text(j) for j in lost], [_text(w) for w in missing]

    @redis_boundary
    async def handback(self, workers: Sequence[str]) -> int:
        return int(await self.scripts.handback(args=[self.prefix, *workers]))

    @redis_boundary
    async def take(self, worker: str, lease_ms: int, job_id: str | None = None) -> TakenJob | None:
        row = await self.scripts.take(args=[self.prefix, worker, lease_ms, job_id or ""])
        return _taken(row) if row else None

    @redis_boundary
    async def wait_inbox(self, worker: str, timeout_s: float) -> str | None:
        """Block until the worker's inbox has a job; returns its id, already popped."""
        item = await self.redis.blpop([self.key("inbox", worker)], timeout=timeout_s)
        return _text(item[1]) if item else None

    @redis_boundary
    async def return_to_inbox(self, worker: str, job_id: str) -> None:
        """Put a job popped by `wait_inbox` back at the head of the worker's inbox, untaken."""
        await self.redis.lpush(self.key("inbox", worker), job_id)

    async def finish(  # finish_many maps Redis errors
        self,
        worker: str,
        job_id: str,
        outcome: str,
        *,
        result: bytes = b"",
        error: str = "",
        delay_ms: int = 0,
    ) -> str | None:
        """Report `completed`, `retry` or `failed`; the status the job ended in (`completed`,
        `retrying` or `failed`: a retry with no retries left fails), or None if the job was
        no longer ours."""
        [(ended, _)] = await self.finish_many([Report(worker, job_id, outcome, result, error, delay_ms)])
        return ended

    @redis_boundary
    async def finish_many(self, reports: Sequence[Report]) -> list[tuple[str | None, TakenJob | None]]:
        """Deliver many workers' reports in one call (finish.lua).

        Per report: the status it left the job in (None: refused, the job was no longer
        the worker's), and the worker's next job if the report asked for one
        (`next_lease_ms` > 0) and its inbox held one."""
        args: list[Any] = [self.prefix, len(reports)]
        for r in reports:
            args += [r.worker, r.job_id, r.outcome, r.result, r.error, r.delay_ms, r.next_lease_ms]
        rows = await self.scripts.finish(args=args)
        return [(_text(row[0]) if row[0] else None, _taken(row[1:]) if len(row) > 1 else None) for row in rows]

    @redis_boundary
    async def progress(self, reports: Sequence[ProgressReport]) -> int:
        """Set running jobs' progress and publish it (progress.lua); how many were accepted
        (a report for a job its worker no longer runs is dropped)."""
        if not reports:
            return 0
        args: list[Any] = [self.prefix]
        for r in reports:
            args += [r.worker, r.job_id, repr(float(r.fraction)), r.message or ""]
        return int(await self.scripts.progress(args=args))

    @redis_boundary
    async def cancel(self, job_id: str) -> tuple[str, bool] | None:
        row = await self.scripts.cancel(args=[self.prefix, job_id])
        if row is None:
            return None
        return _text(row[0]), bool(int(row[1]))

    @redis_boundary
    async def retry(self, job: Job) -> str:
        """Queue a finished job again with a fresh attempt budget; its status before, or 'busy'."""
        return _text(await self.scripts.retry(args=[self.prefix, job.id, *encode_pairs(job, RESTORED)]))

    @redis_boundary
    async def forget(self, revs: Iterable[tuple[str, int]]) -> int:
        args: list[Any] = [self.prefix]
        for job_id, rev in revs:
            args += [job_id, rev]
        return int(await self.scripts.forget(args=args)) if len(args) > 1 else 0

    @redis_boundary
    async def delete(self, job_id: str) -> None:
        """Remove a job's runtime record and its log (after it was cancelled)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.key("job", job_id), self.key(job_logs.KEY, job_id))
            pipe.zrem(self.key("dead"), job_id)
            await pipe.execute()

    @redis_boundary
    async def live_state(self, job_id: str) -> dict[str, str]:
        raw = await self.redis.hgetall(self.key("job", job_id))
        return {_text(k): _text(v) for k, v in raw.items()}

    @redis_boundary
    async def missing(self, job_ids: Sequence[str]) -> list[str]:
        """The ids among these that Redis does not hold."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.exists(self.key("job", job_id))
            found = await pipe.execute()
        return [job_id for job_id, present in zip(job_ids, found) if not present]

    @redis_boundary
    async def awaiting_insert(self, job_ids: Sequence[str]) -> list[str]:
        """The ids among these of `queue` jobs Redis still holds: their insert into MongoDB is on its way."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.key("job", job_id), "dur")
            found = await pipe.execute()
        return [job_id for job_id, durability in zip(job_ids, found) if durability is not None
                and _text(durability) == QUEUE]

    @redis_boundary
    async def wait_wake(self, timeout_s: float) -> None:
        await self.redis.blpop([self.key("wake")], timeout=timeout_s)

    @redis_boundary
    async def routes(self) -> list[Route]:
        """Every route with ready jobs, and whether a registered worker group can run it."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(self.key("routes"))
            pipe.hgetall(self.key("groups"))
            names, groups = await pipe.execute()
        names = sorted(_text(name) for name in names)
        async with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zcard(self.key("ready", name))
            counts = await pipe.execute()
        served = [orjson.loads(definition) for definition in groups.values()]
        found = []
        for name, count in zip(names, counts):
            if not count:
                continue
            queue, _, job_type = name.partition(":")
            routable = any(queue in g["q"] and ("t" not in g or job_type in g["t"]) for g in served)
            found.append(Route(queue, job_type, int(count), routable))
        return found

    @redis_boundary
    async def served(self) -> list[dict[str, Any]]:
        """The worker groups registered now: their queues, types (None: any) and workers' nodes."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key("groups"))
            pipe.hgetall(self.key("wgroup"))
            pipe.hgetall(self.key("workers"))
            groups, wgroup, nodes = await pipe.execute()
        found = []
        for raw_id, definition in groups.items():
            group = orjson.loads(definition)
            members = [w for w, g in wgroup.items() if g == raw_id]
            found.append({"queues": group["q"], "types": group.get("t"), "workers": len(members),
                          "nodes": sorted({_text(nodes[w]) for w in members if w in nodes})})
        return found

    @redis_boundary
    async def completed_total(self) -> int:
        """Jobs completed in the whole cluster since this Redis began counting."""
        return int(await self.redis.get(self.key("count", "completed")) or 0)

    @redis_boundary
    async def finished_totals(self) -> dict[str, int | None]:
        """Jobs that finished completed, failed and cancelled since Redis began counting (None: not counted)."""
        names = ("completed", "failed", "cancelled")
        values = await self.redis.mget([self.key("count", name) for name in names])
        return {name: None if value is None else int(value) for name, value in zip(names, values)}

    @redis_boundary
    async def count_cancelled(self) -> None:
        """A job cancelled outside cancel.lua (Redis no longer held it) counts in the total too."""
        await self.redis.incr(self.key("count", "cancelled"))

    @redis_boundary
    async def seed_finished_totals(self, totals: Mapping[str, int]) -> None:
        """Start counters that do not exist yet (a new Redis) from MongoDB's figures; kept ones stay."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for name, value in totals.items():
                pipe.set(self.key("count", name), value, nx=True)
            await pipe.execute()

    @redis_boundary
    async def trim_dead_letters(self, before_ms: int) -> int:
        """Forget dead-letter entries of jobs that failed before `before_ms` (their records expire then)."""
        return int(await self.redis.zremrangebyscore(self.key("dead"), "-inf", before_ms))

    @redis_boundary
    async def depths(self, routes: Sequence[Route] | None = None) -> dict[str, int]:
        """Cluster-wide counts by state; `routes` (from routes()) saves reading them again."""
        ready = sum(route.ready for route in (await self.routes() if routes is None else routes))
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.key("delayed"))
            pipe.zcard(self.key("leases"))
            pipe.zcard(self.key("dead"))
            pipe.xlen(self.key(STREAM))
            pipe.get(self.key("count", "completed"))
            pipe.get(self.key("count", "failed"))
            pipe.get(self.key("count", "retried"))
            pipe.xrange(self.key(STREAM), count=1)  # the oldest entry: its id starts with its time in ms
            pipe.time()
            (delayed, leased, dead, outbox, completed, failed, retried,
             oldest, (now_s, now_us)) = await pipe.execute()
        return {
            "ready": ready,
            "delayed": delayed,
            "processing": leased,
            "dead_letter": dead,
            "outbox": outbox,
            # How long the oldest change has waited for MongoDB (0 with nothing waiting).
            "outbox_oldest_age_ms": _stream_age_ms(oldest, int(now_s) * 1000 + int(now_us) // 1000),
            "completed_total": int(completed or 0),
            "failed_total": int(failed or 0),
            "retried_total": int(retried or 0),
        }

    @redis_boundary
    async def workers(self) -> list[dict[str, Any]]:
        """Every registered worker with its node, capacity, load and counters."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key("workers"))
            pipe.hgetall(self.key("capacity"))
            pipe.hgetall(self.key("load"))
            pipe.zrange(self.key("seen"), 0, -1, withscores=True)
            pipe.hgetall(self.key("worker_stats"))
            nodes, capacity, load, seen, stats = await pipe.execute()
        seen_ms = {_text(w): score for w, score in seen}
        counters = {_text(k): int(v) for k, v in stats.items()}
        running = await self._running_jobs([_text(w) for w in nodes])
        rows = []
        for raw_id, node in sorted(nodes.items()):
            worker = _text(raw_id)
            rows.append(
                {
                    "id": worker,
                    "node_id": _text(node),
                    "capacity": int(capacity.get(raw_id, 0)),
                    "load": int(load.get(raw_id, 0)),
                    "last_heartbeat_ms": seen_ms.get(worker),
                    "current_job": running.get(worker),
                    "processed": counters.get(f"{worker}:processed", 0),
                    "failed": counters.get(f"{worker}:failed", 0),
                }
            )
        return rows


    async def _running_jobs(self, workers: Sequence[str]) -> dict[str, str]:
        """worker -> the job it is running now (a worker runs one at a time)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for worker in workers:
                pipe.smembers(self.key("wjobs", worker))
            held = [[_text(j) for j in members] for members in await pipe.execute()]
        async with self.redis.pipeline(transaction=False) as pipe:
            for jobs in held:
                for job_id in jobs:
                    pipe.hget(self.key("job", job_id), "status")
            statuses = iter(await pipe.execute())
        running = {}
        for worker, jobs in zip(workers, held):
            for job_id in jobs:
                if _text(next(statuses) or b"") == "running":
                    running[worker] = job_id
        return running


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _taken(row: Sequence[Any]) -> TakenJob:
    """A job as take_next (lib.lua) returns it: id, wait_ms (-1: unknown), then the TAKEN fields."""
    wait_ms = int(row[1])
    return TakenJob(id=_text(row[0]), wait_s=wait_ms / 1000 if wait_ms >= 0 else None, **decode_taken(row[2:]))


def _stream_age_ms(entries: list[Any], now_ms: int) -> int:
    if not entries:
        return 0
    entry_ms = int(_text(entries[0][0]).split("-", 1)[0])
    return max(0, now_ms - entry_ms)
