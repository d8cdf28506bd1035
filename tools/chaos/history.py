"""The history checker: proves from the outside what a chaos run did to acknowledged jobs.

Inputs, none of them taken on the nodes' word:
- the ids the load generator got a 2xx for, each with what it expects (`completed`, or
  `failed` for jobs whose processor was told to fail);
- the runs the `history` processor appended to its per-process record (tools/chaos/recording.py);
- the faults the test injected, with their times: process kills (a run with no `end` line
  ended when its process was killed) and *blackouts* (a node paused, or Redis out of reach),
  during which a worker could not renew its job leases;
- what MongoDB and Redis said about each job, sampled during the run by `StateWatcher`
  and read once more at the end.

What it proves (each property reports its violations by name):
(a) `outcomes`: every acknowledged job reached `completed`, or `failed` where told to fail;
(b) `overlaps`: no job ran on two workers at overlapping times while both held a valid
    lease. A run holds a valid lease while both its job lease (JOB_LEASE_TTL) and its
    worker's registration (WORKER_TTL, after which the leader declares the worker dead and
    takes its jobs back) are renewed by the node's heartbeats; both live on Redis's clock.
    Two runs of the same attempt number are always a violation (a job is taken only from an
    inbox it was assigned to, and each take counts an attempt). Two overlapping runs of
    different attempts are excused only when the lower attempt's lease may have expired: its
    node was in a blackout that had lasted at least (min(JOB_LEASE_TTL, WORKER_TTL) -
    heartbeat interval) when the higher attempt started. Less than that, and a heartbeat
    renewed both just before the blackout, so they were still valid. A killed run ends at
    the kill.
(c) `regressions`: states only move forward: per source, a job's rev never decreases, a
    `completed` or `failed` job is never seen unfinished again, and no run of a job starts
    after the job was first seen completed (except a run taken before its node's blackout
    that could only write its first line on waking, see `woke_late`).
(d) `disagreements`: at the end MongoDB and Redis agree: every acknowledged job is finished
    in MongoDB, Redis holds no unfinished job MongoDB lacks (or the reverse), and no
    finished job is still queued or leased in Redis.

Times are CLOCK_MONOTONIC seconds of this machine; comparing them is fine here because the
whole test cluster runs on one machine (jobnode itself never does, see jobnode/storage/redis/lease.py).
The report is a small JSON summary (`Report.summary()`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from pymongo.asynchronous.database import AsyncDatabase
from redis.asyncio import Redis

from jobnode.core.background import cancel_all
from tools.chaos.recording import monotonic_s

FINISHED = ("completed", "failed", "cancelled")
# Scheduling noise on a busy 2-core machine, in seconds: how much earlier than the earliest
# possible lease expiry a takeover may appear in the record (records are written a moment
# after the take that started the run).
SLACK_S = 0.25
WATCH_INTERVAL_S = 0.5
# The watcher spends at most 1/(1 + this) of the time reading: after a read that took t
# seconds it waits at least this many times t. The store under test is the one it reads, and
# a fixed pace would take a growing share of it as the jobs pile up.
WATCH_IDLE_FACTOR = 4.0
# How soon after its node's blackout ends a run taken before it may write its first line.
WAKE_GRACE_S = 1.0
SAMPLE_TIMEOUT_S = 2.0


@dataclass
class Run:
    """One execution of a job, from the processor's record."""

    job: str
    worker: str
    node: str
    pid: int
    attempt: int
    start: float
    end: float | None = None
    outcome: str | None = None

    def brief(self) -> dict[str, Any]:
        return {"worker": self.worker, "attempt": self.attempt, "start": round(self.start, 3),
                "end": None if self.end is None else round(self.end, 3), "outcome": self.outcome}


@dataclass(frozen=True)
class Blackout:
    """A stretch in which `nodes` (None: every node) could not renew job leases."""

    kind: str
    start: float
    end: float
    nodes: frozenset[str] | None = None

    def covers(self, node: str) -> bool:
        return self.nodes is None or node in self.nodes


@dataclass
class Faults:
    """What the test did to the cluster, and when."""

    kills: dict[int, float] = field(default_factory=dict)  # pid -> time of its SIGKILL
    blackouts: list[Blackout] = field(default_factory=list)
    log: list[dict[str, Any]] = field(default_factory=list)

    def killed(self, pid: int, node: str) -> None:
        now = monotonic_s()
        self.kills.setdefault(pid, now)
        self.log.append({"fault": "kill", "node": node, "pid": pid, "t": round(now, 3)})

    def blackout(self, kind: str, start: float, end: float, nodes: Iterable[str] | None = None) -> None:
        self.blackouts.append(Blackout(kind, start, end, None if nodes is None else frozenset(nodes)))
        self.log.append({"fault": kind, "nodes": sorted(nodes) if nodes else "all",
                         "start": round(start, 3), "end": round(end, 3)})

    def note(self, kind: str, **details: Any) -> None:
        self.log.append({"fault": kind, "t": round(monotonic_s(), 3), **details})


def read_runs(record_dir: Path) -> dict[str, list[Run]]:
    """Every run in the record, per job, in start order."""
    started: dict[tuple[str, int, str, int], Run] = {}
    for path in sorted(record_dir.glob("*.jsonl")):
        # Each line is one write(2), but a read racing that write may see only its start
        # (Linux reads do not wait for writes to a regular file). Only newline-terminated
        # lines are whole; the unterminated tail is read again on the next call.
        for raw in path.read_bytes().split(b"\n")[:-1]:
            line = orjson.loads(raw)
            key = (line["job"], line["pid"], line["worker"], line["attempt"])
            if line["event"] == "start":
                started[key] = Run(line["job"], line["worker"], line["node"], line["pid"], line["attempt"],
                                   line["t"])
            elif key in started:
                started[key].end, started[key].outcome = line["t"], line["outcome"]
    runs: dict[str, list[Run]] = defaultdict(list)
    for run in sorted(started.values(), key=lambda r: r.start):
        runs[run.job].append(run)
    return dict(runs)


# -- (c): observations during the run -------------------------------------------------

@dataclass(frozen=True)
class Sample:
    t: float
    source: str  # "mongodb" or "redis"
    status: str
    rev: int


class StateWatcher:
    """Samples every acknowledged job's status and rev in MongoDB and Redis until stopped.

    A sample that cannot be taken (the server is paused or cut off) is skipped: the
    watcher must not fail, or slow down, because of the very faults it watches.

    Nor may it load the store it watches. MongoDB is read with one unfiltered scan: on
    SecantusDB `{_id: {$in: ids}}` is no index lookup but a scan that tests every document
    against the whole list, so its cost grew with the square of the jobs; past ~3,000 a read
    outlasted SAMPLE_TIMEOUT_S, the watcher gave up on it while the server went on computing,
    and the next ones piled up on the server until it had no time left for the nodes (the
    stall of the dense chaos runs). The read carries a server-side time limit too, so one
    given up is also ended there, and reads are paced by how long they take.
    """

    def __init__(self, db: AsyncDatabase, redis: Redis, prefix: str, acked: dict[str, str]) -> None:
        self.db, self.redis, self.prefix, self.acked = db, redis, prefix, acked
        self.samples: dict[str, list[Sample]] = defaultdict(list)
        self.skipped = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> StateWatcher:
        self._task = asyncio.create_task(self._run(), name="state-watcher")
        return self

    async def stop(self) -> None:
        # Cancelled until it is gone: on Python 3.11 asyncio.wait_for (used by sample_once)
        # can swallow a cancel that arrives as its read completes, and one cancel then hung
        # a chaos test's finish() until pytest's timeout.
        if self._task is not None:
            await cancel_all([self._task])

    async def sample_once(self) -> None:
        ids = list(self.acked)
        for source, read in (("mongodb", self._mongo), ("redis", self._redis)):
            try:
                states = await asyncio.wait_for(read(ids), timeout=SAMPLE_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - any failure to read is a skipped sample
                self.skipped += 1
                continue
            # Stamped once the answer is in: the state held at some moment before this, so
            # "seen completed at t" never claims a moment earlier than the truth.
            now = monotonic_s()
            for job_id, (status, rev) in states.items():
                self.samples[job_id].append(Sample(now, source, status, rev))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.sample_once()
            await asyncio.sleep(max(WATCH_INTERVAL_S, WATCH_IDLE_FACTOR * (loop.time() - started)))

    async def _mongo(self, ids: list[str]) -> dict[str, tuple[str, int]]:
        wanted = set(ids)
        found = self.db.jobs.find({}, {"status": 1, "rev": 1}, max_time_ms=int(SAMPLE_TIMEOUT_S * 1000))
        return {doc["_id"]: (doc["status"], doc["rev"]) async for doc in found if doc["_id"] in wanted}

    async def _redis(self, ids: list[str]) -> dict[str, tuple[str, int]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(f"{self.prefix}:job:{job_id}", "status", "rev")
            rows = await pipe.execute()
        return {job_id: (status.decode(), int(rev)) for job_id, (status, rev) in zip(ids, rows) if status}


def woke_late(run: Run, done_at: float, faults: Faults | None) -> bool:
    """Did `run` begin just as its node came out of a blackout that began before the job was done?

    Such a run was taken before the blackout (its lease has since passed on) and only now got
    to write its first line; its outcome is refused by Redis, and its node's next heartbeat
    cancels it. It is not the job going back.
    """
    return faults is not None and any(b.covers(run.node) and b.start <= done_at and b.end <= run.start <= b.end + WAKE_GRACE_S
               for b in faults.blackouts)


def regressions(samples: dict[str, list[Sample]], runs: dict[str, list[Run]],
                faults: Faults | None = None) -> list[dict[str, Any]]:
    found = []
    for job_id, seen in samples.items():
        for source in ("mongodb", "redis"):
            ordered = [s for s in seen if s.source == source]
            for before, after in zip(ordered, ordered[1:]):
                if after.rev < before.rev or (before.status in FINISHED and after.status not in FINISHED):
                    found.append({"job": job_id, "source": source, "from": [before.status, before.rev],
                                  "to": [after.status, after.rev]})
        first_done = min((s.t for s in seen if s.status == "completed"), default=None)
        late = [r for r in runs.get(job_id, []) if first_done is not None and r.start > first_done
                and not woke_late(r, first_done, faults)]
        if late:
            found.append({"job": job_id, "ran_after_completed": [r.brief() for r in late]})
    return found


# -- (b): overlapping runs ------------------------------------------------------------

@dataclass(frozen=True)
class LeaseTiming:
    """The lease settings of the cluster under test (JOB_LEASE_TTL, WORKER_TTL, WORKER_HEARTBEAT_INTERVAL)."""

    ttl_s: float
    worker_ttl_s: float
    heartbeat_s: float

    @property
    def shortest_expiry_s(self) -> float:
        # Whichever runs out first ends the lease; the last renewal of both may have
        # happened up to one heartbeat before the blackout began.
        return min(self.ttl_s, self.worker_ttl_s) - self.heartbeat_s


def effective_end(run: Run, faults: Faults) -> float:
    if run.end is not None:
        return run.end
    return faults.kills.get(run.pid, float("inf"))


def lease_may_have_expired(run: Run, at: float, faults: Faults, timing: LeaseTiming) -> bool:
    """Could `run`'s lease have run out by `at`? Only if a blackout of its node lasted long enough."""
    for blackout in faults.blackouts:
        if not blackout.covers(run.node) or blackout.start > at:
            continue
        lasted = min(blackout.end, at) - blackout.start
        if lasted >= timing.shortest_expiry_s - SLACK_S:
            return True
    return False


def overlaps(runs: dict[str, list[Run]], faults: Faults, timing: LeaseTiming) -> tuple[list[dict], int]:
    """(violations, excused overlaps).

    Of two overlapping runs, the one with the lower attempt held the older lease, whichever
    began first in the record: a worker paused between its take and its first line starts
    its run late, after the lease it took has passed to a later attempt.
    """
    bad, excused = [], 0
    for job_id, job_runs in runs.items():
        for i, first in enumerate(job_runs):
            for second in job_runs[i + 1:]:
                if second.start >= effective_end(first, faults) or first.start >= effective_end(second, faults):
                    continue
                older, newer = sorted((first, second), key=lambda r: (r.attempt, r.start))
                if older.attempt != newer.attempt and lease_may_have_expired(older, newer.start, faults, timing):
                    excused += 1
                    continue
                bad.append({"job": job_id, "runs": [older.brief(), newer.brief()]})
    return bad, excused


# -- (a) and (d): the end state -------------------------------------------------------

@dataclass
class EndState:
    """MongoDB's and Redis's final word on the jobs."""

    mongo: dict[str, dict[str, Any]]  # id -> {status, rev, attempts}
    redis: dict[str, dict[str, str]]  # id -> job hash, for every job Redis still holds
    queued: dict[str, set[str]]  # ready / delayed / leases -> ids


async def read_end_state(db: AsyncDatabase, redis: Redis, prefix: str) -> EndState:
    mongo = {doc["_id"]: doc async for doc in db.jobs.find({}, {"status": 1, "rev": 1, "attempts": 1})}
    redis_jobs = {}
    marker = f"{prefix}:job:"
    async for key in redis.scan_iter(match=f"{marker}*", count=1000):
        raw = await redis.hgetall(key)
        redis_jobs[key.decode()[len(marker):]] = {k.decode(): v.decode() for k, v in raw.items()}
    queued = {}
    for name in ("ready", "delayed", "leases"):
        queued[name] = {member.decode() for member in await redis.zrange(f"{prefix}:{name}", 0, -1)}
    return EndState(mongo, redis_jobs, queued)


def outcome_failures(acked: dict[str, str], end: EndState) -> list[dict[str, Any]]:
    bad = []
    for job_id, expected in acked.items():
        status = (end.mongo.get(job_id) or {}).get("status", "missing")
        if status != expected:
            bad.append({"job": job_id, "expected": expected, "mongodb": status,
                        "redis": (end.redis.get(job_id) or {}).get("status", "absent")})
    return bad


def disagreements(end: EndState) -> list[dict[str, Any]]:
    bad = []
    for job_id in sorted(set(end.mongo) | set(end.redis)):
        doc, live = end.mongo.get(job_id), end.redis.get(job_id)
        mongo_status = doc["status"] if doc else "absent"
        redis_status = live.get("status", "absent") if live else "absent"
        queued_in = [name for name, ids in end.queued.items() if job_id in ids]
        if doc is None or (mongo_status not in FINISHED and live is None):
            bad.append({"job": job_id, "mongodb": mongo_status, "redis": redis_status})
        elif live is not None and redis_status != mongo_status:
            bad.append({"job": job_id, "mongodb": mongo_status, "redis": redis_status})
        elif mongo_status in FINISHED and queued_in:
            bad.append({"job": job_id, "mongodb": mongo_status, "still_in": queued_in})
    return bad


# -- the report -----------------------------------------------------------------------

@dataclass
class Report:
    acknowledged: int
    completed: int
    failed_as_told: int
    runs: int
    jobs_run_more_than_once: int
    overlaps_excused: int
    refused_submits: dict[str, int]
    violations: dict[str, list[dict[str, Any]]]
    faults: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def summary(self) -> dict[str, Any]:
        """The small JSON summary: counts, and at most five examples per violated property."""
        return {
            "ok": self.ok,
            "acknowledged": self.acknowledged,
            "completed": self.completed,
            "failed_as_told": self.failed_as_told,
            "runs": self.runs,
            "jobs_run_more_than_once": self.jobs_run_more_than_once,
            "overlaps_excused": self.overlaps_excused,
            "refused_submits": self.refused_submits,
            "violations": {name: {"count": len(found), "examples": found[:5]}
                           for name, found in self.violations.items()},
            "faults": self.faults,
        }


def check(acked: dict[str, str], runs: dict[str, list[Run]], samples: dict[str, list[Sample]],
          end: EndState, faults: Faults, timing: LeaseTiming,
          refused: dict[str, int] | None = None) -> Report:
    bad_overlaps, excused = overlaps(runs, faults, timing)
    outcomes = outcome_failures(acked, end)
    statuses = [(end.mongo.get(i) or {}).get("status") for i in acked]
    return Report(
        acknowledged=len(acked),
        completed=statuses.count("completed"),
        failed_as_told=sum(1 for i, want in acked.items()
                           if want == "failed" and (end.mongo.get(i) or {}).get("status") == "failed"),
        runs=sum(len(r) for r in runs.values()),
        jobs_run_more_than_once=sum(1 for r in runs.values() if len(r) > 1),
        overlaps_excused=excused,
        refused_submits=dict(refused or {}),
        violations={
            "outcomes": outcomes,
            "overlaps": bad_overlaps,
            "regressions": regressions(samples, runs, faults),
            "disagreements": disagreements(end),
        },
        faults=faults.log,
    )
