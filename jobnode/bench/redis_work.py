"""What a workload costs Redis: commands per job, server time per job, and Redis's CPU share.

Read from INFO commandstats and INFO cpu before and after (they are server-wide: during
the drain only the cluster uses this Redis). Scripts all count as `evalsha`, so the
split between dispatch, take and finish is not visible here, and the commands a script
runs are counted again under their own names: `server_usec_per_job` counts top-level
calls only (evalsha plus commands Redis saw from clients, as far as commandstats can
tell them apart: it cannot, so it is evalsha's time plus the rest, an upper bound).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

TOP = 8


@dataclass(frozen=True)
class RedisMark:
    commands: dict[str, dict[str, float]]
    cpu_s: float
    wall_s: float


async def redis_mark(redis: Redis) -> RedisMark:
    stats = await redis.info("commandstats")
    cpu = await redis.info("cpu")
    commands = {name.removeprefix("cmdstat_"): {"calls": float(v["calls"]), "usec": float(v["usec"])}
                for name, v in stats.items()}
    return RedisMark(commands, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), time.monotonic())


def redis_work(before: RedisMark, after: RedisMark, jobs: int) -> dict[str, Any]:
    """Calls and server microseconds per job for the busiest commands, and the CPU share of Redis."""
    delta = {}
    for name, now in after.commands.items():
        was = before.commands.get(name, {"calls": 0.0, "usec": 0.0})
        calls, usec = now["calls"] - was["calls"], now["usec"] - was["usec"]
        if calls > 0:
            delta[name] = (calls, usec)
    busiest = sorted(delta.items(), key=lambda item: item[1][1], reverse=True)[:TOP]
    wall_s = after.wall_s - before.wall_s
    return {
        "calls_per_job": round(sum(calls for calls, _ in delta.values()) / jobs, 2),
        "server_usec_per_job_upper_bound": round(sum(usec for _, usec in delta.values()) / jobs, 1),
        "script_usec_per_job": round(delta.get("evalsha", (0.0, 0.0))[1] / jobs, 1),
        "cpu_seconds": round(after.cpu_s - before.cpu_s, 3),
        "cpu_share_of_window": round((after.cpu_s - before.cpu_s) / wall_s, 3) if wall_s > 0 else None,
        "busiest": {name: {"calls_per_job": round(calls / jobs, 2), "usec_per_call": round(usec / calls, 1)}
                    for name, (calls, usec) in busiest},
    }
