"""Local start: a job submitted to a node begins on one of that node's idle workers in the
enqueue call itself.

A worker waiting on an empty inbox is idle. The submit path reserves idle workers for its
enqueue (so two enqueues in flight never offer the same one), and enqueue.lua starts a job on
one of them when nothing waits ahead of it and the worker holds nothing in Redis (the script
says exactly when). The started job then reaches its worker here, in memory: no dispatch
round, no inbox pop, no take call, which is where most of a short job's submit→complete time
went at a moderate rate. The node only proposes workers; Redis decides, atomically.

A worker whose inbox brings a job while it is reserved (the leader gave it one in the same
instant) waits for that enqueue's answer before it starts anything, so a job started for it
always runs first and never waits, unrenewed, behind another; and a job its inbox pop (left to
end: calling it off could lose the id) brings while it runs a handed one goes back to the
inbox (jobnode/pipeline/workers.py). A started job that is never
handed (the enqueue's reply was lost) is a running job nobody runs: its lease lapses and the
reaper queues it again.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from jobnode.storage.redis.queue import TakenJob


class IdleWorkers:
    """This node's idle workers, the ones reserved for an enqueue in flight, and the jobs started for them."""

    def __init__(self, lease_ms: int) -> None:
        self.lease_ms = lease_ms  # the job lease a job started here begins with (JOB_LEASE_TTL)
        self._waiting: dict[str, asyncio.Future[None]] = {}  # idle worker -> wakes it when a job is handed
        self._reserved: dict[str, asyncio.Future[None]] = {}  # worker -> done when its enqueue answered
        self._handed: dict[str, deque[TakenJob]] = {}
        self._closed = False
        self.started = 0  # jobs started here since the node started

    # -- the workers' side -----------------------------------------------------------

    def waiting(self, worker: str) -> asyncio.Future[None]:
        """`worker` waits for a job; the future completes when one is handed to it."""
        wake = asyncio.get_running_loop().create_future()
        if not self._closed:
            self._waiting[worker] = wake
        return wake

    def is_waiting(self, worker: str) -> bool:
        return worker in self._waiting

    @property
    def available(self) -> int:
        """Idle workers not reserved by an enqueue in flight."""
        return sum(1 for worker in self._waiting if worker not in self._reserved)

    def not_waiting(self, worker: str) -> None:
        """`worker` stopped waiting (it has a job): it is no longer offered."""
        self._waiting.pop(worker, None)

    async def settled(self, worker: str) -> None:
        """Wait until no enqueue in flight may start a job for `worker`."""
        answered = self._reserved.get(worker)
        if answered is not None:
            await asyncio.shield(answered)

    def take_handed(self, worker: str) -> TakenJob | None:
        """The next job started for `worker` and not yet run, if any."""
        jobs = self._handed.get(worker)
        if not jobs:
            return None
        job = jobs.popleft()
        if not jobs:
            del self._handed[worker]
        return job

    def close(self) -> None:
        """The pool is stopping: offer no worker any more (handback returns what was started)."""
        self._closed = True
        self._waiting.clear()

    # -- the submit side -------------------------------------------------------------

    def reserve(self, most: int) -> list[str]:
        """Up to `most` idle workers for one enqueue; give them back with `release`."""
        chosen = [worker for worker in self._waiting if worker not in self._reserved][:most]
        loop = asyncio.get_running_loop()
        for worker in chosen:
            self._reserved[worker] = loop.create_future()
        return chosen

    def release(self, workers: Sequence[str]) -> None:
        """The enqueue answered (after `hand` for what it started), or failed."""
        for worker in workers:
            answered = self._reserved.pop(worker, None)
            if answered is not None and not answered.done():
                answered.set_result(None)

    def hand(self, worker: str, job: TakenJob) -> None:
        """A job the enqueue started on `worker`: it runs it next."""
        self._handed.setdefault(worker, deque()).append(job)
        self.started += 1
        wake = self._waiting.get(worker)
        if wake is not None and not wake.done():
            wake.set_result(None)
