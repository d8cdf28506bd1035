"""What a workload costs Redis: commands per job, server time per job, and Redis's CPU share.

Read from INFO commandstats and INFO cpu before and after (they are server-wide: during
the drain only the cluster uses this Redis). Scripts all count as `evalsha`, so the
split between dispatch, take and finish is not visible here, and the commands a script
runs are counted again under their own names: `server_usec_per_job` counts top-level
calls only (evalsha plus commands Redis saw from clients, as far as commandstats can
tell them apart: it cannot, so it is evalsha's time plus the rest, an upper bound).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from jobnode.storage.redis.scripts import SCRIPT_NAMES, script_source

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


class ScriptTimes:
    """Server time per script call, from Redis's slow log with a threshold of 0 µs.

    The slow log then records commands with their duration, so each EVALSHA can be named
    by its SHA (jobnode's script sources hashed here). It is read and emptied every POLL_S.
    What it holds is a sample, not a census: entries logged between a read and the reset
    that follows are lost, and of the commands a script runs inside it Redis 6.2 logs only
    some, the slower ones more often. So `usec_per_call` of the scripts is the figure to
    read; `sampled_calls_per_job` undercounts, and the inner commands' times are biased up.
    Durations include time the server waited for a CPU (on a busy box, a lot). The
    server's settings are put back at the end."""

    POLL_S = 0.2
    CAPACITY = 200_000

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.previous: dict[str, str] = {}
        self.names = {hashlib.sha1(script_source(name).encode()).hexdigest(): name for name in SCRIPT_NAMES}
        self.totals: dict[str, list[float]] = {}
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for name in ("slowlog-log-slower-than", "slowlog-max-len"):
            self.previous.update(await self.redis.config_get(name))
        await self.redis.config_set("slowlog-max-len", self.CAPACITY)
        await self.redis.slowlog_reset()
        await self.redis.config_set("slowlog-log-slower-than", 0)
        self.task = asyncio.create_task(self._collect_forever())

    async def _collect_forever(self) -> None:
        while True:
            await asyncio.sleep(self.POLL_S)
            await self._collect()

    async def _collect(self) -> None:
        entries = await self.redis.slowlog_get(self.CAPACITY)
        await self.redis.slowlog_reset()
        for entry in entries:
            words = entry["command"].split()
            command = words[0].decode().lower() if words else "?"
            if command == "evalsha" and len(words) > 1:
                command = f"script:{self.names.get(words[1].decode(), words[1].decode()[:8])}"
            calls_usec = self.totals.setdefault(command, [0, 0.0])
            calls_usec[0] += 1
            calls_usec[1] += entry["duration"]

    async def stop(self, jobs: int) -> dict[str, Any]:
        if self.task:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self._collect()
        await self.redis.config_set("slowlog-log-slower-than", self.previous.get("slowlog-log-slower-than", 10000))
        await self.redis.config_set("slowlog-max-len", self.previous.get("slowlog-max-len", 128))
        scripts = {name: v for name, v in self.totals.items() if name.startswith("script:")}
        busiest = sorted(self.totals.items(), key=lambda item: item[1][1], reverse=True)[:TOP]
        return {
            "scripts": {name: {"sampled_calls_per_job": round(calls / jobs, 3), "usec_per_call": round(usec / calls, 1)}
                        for name, (calls, usec) in sorted(scripts.items())},
            "busiest": {name: {"sampled_calls_per_job": round(calls / jobs, 3),
                               "usec_per_call": round(usec / calls, 1)} for name, (calls, usec) in busiest},
        }
