"""The cost of dispatch with named queues: Redis server time and commands per dispatched job.

Straight against Redis (no nodes): worker groups are registered as nodes would register
them, jobs are queued across the queues and types, and dispatch.lua runs until every job is
assigned (each worker has room for all it gets, so nothing needs to finish). INFO
commandstats before and after gives the script's server time per job and the commands it
ran per job. The layouts compare one queue against three, and 100 workers per queue against
1,000 (the O(log n) claim: ten times the workers should cost about the same per job).
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

from jobnode.core.job import Job, JobSpec
from jobnode.storage.redis.lease import LeaderLease
from jobnode.storage.redis.queue import JobQueue
from tools.bench.redis_work import redis_mark

TYPES = ("echo", "resize", "mail")
ENQUEUE_CHUNK = 1000
DISPATCH_BATCH = 256


async def dispatch_cost(redis: Redis, prefix: str, *, queues: int, workers_per_queue: int, jobs: int,
                        strategy: str = "round_robin") -> dict[str, Any]:
    """Register `queues` groups of workers (one node each), queue `jobs`, dispatch them all."""
    queue = JobQueue(redis, prefix)
    token = await LeaderLease(redis, queue.scripts, prefix, "bench", ttl_s=600).acquire()
    names = [f"q{i}" for i in range(queues)]
    capacity = jobs // (queues * workers_per_queue) + 2
    for name in names:
        await queue.register(f"node-{name}", capacity, [f"{name}/w{i}" for i in range(workers_per_queue)],
                             queues=[name], types=list(TYPES))
    batch = [Job.new(JobSpec(type=TYPES[i % len(TYPES)], queue=names[i % queues], priority=i % 11))
             for i in range(jobs)]
    for start in range(0, jobs, ENQUEUE_CHUNK):
        await queue.enqueue(batch[start:start + ENQUEUE_CHUNK])
    before = await redis_mark(redis)
    began = time.perf_counter()
    assigned = calls = 0
    while True:
        result = await queue.dispatch("bench", token, max_jobs=DISPATCH_BATCH, strategy=strategy,
                                      lease_ms=600_000, share_every=10)
        calls += 1
        assigned += result.assigned
        if result.assigned == 0:
            break
    wall_s = time.perf_counter() - began
    after = await redis_mark(redis)
    script = after.commands["evalsha"]["usec"] - before.commands.get("evalsha", {"usec": 0.0})["usec"]
    inner = sum(now["calls"] - before.commands.get(name, {"calls": 0.0})["calls"]
                for name, now in after.commands.items() if name not in ("evalsha", "info"))
    return {
        "queues": queues, "workers": queues * workers_per_queue, "jobs": jobs, "assigned": assigned,
        "dispatch_calls": calls, "strategy": strategy,
        "script_usec_per_job": round(script / max(assigned, 1), 2),
        "redis_commands_per_job": round(inner / max(assigned, 1), 2),
        "client_wall_usec_per_job": round(wall_s * 1e6 / max(assigned, 1), 2),
    }


async def run_routing(redis_url: str, *, jobs: int) -> dict[str, Any]:
    """The layouts, each under its own key prefix of the bench's Redis."""
    redis = Redis.from_url(redis_url)
    report: dict[str, Any] = {}
    layouts = {"1x300": (1, 300), "3x100": (3, 100), "3x1000": (3, 1000)}
    try:
        for name, (queues, per_queue) in layouts.items():
            prefix = f"bench-routing-{name}-{time.monotonic_ns()}"
            report[name] = await dispatch_cost(redis, prefix, queues=queues, workers_per_queue=per_queue, jobs=jobs)
            keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
            for start in range(0, len(keys), 1000):
                await redis.delete(*keys[start:start + 1000])
    finally:
        await redis.aclose()
    base, three = report["1x300"]["script_usec_per_job"], report["3x100"]["script_usec_per_job"]
    report["three_queues_vs_one"] = round(three / base, 3) if base else None
    report["thousand_vs_hundred_workers_per_queue"] = (
        round(report["3x1000"]["script_usec_per_job"] / three, 3) if three else None)
    return report
