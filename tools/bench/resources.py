"""The nodes' resident memory and CPU time: with a queued backlog, during its drain, and over a steady run.

The issue's bar: under 150 MiB per node with 10,000 queued jobs and 10 workers, and no
growth over a 10-minute steady run. Both come from /proc (tools.procfs), so they are
Linux-only; elsewhere the figures are None.

`ResourceSampler` samples every node in the background while a workload runs; the CPU
samples tell whether a node was the limit of a drain (a share near 1.0 of one core: the
node's single event loop was busy all the time). It can also follow the CPU of other
processes (the embedded servers, the bench itself) and always follows the whole machine's
(`machine`: cores busy, whoever used them; `steal`: cores the hypervisor gave to other
guests), so a report shows when the box, not one process, was the limit.

The steady run offers a fixed rate, open loop, for a chosen time and compares the first and
the last minute: a leak shows as growth that keeps going, where warm-up (imports, pools,
caches) levels off within the first minute.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any

from tools.bench.cluster import progress
from tools.bench.workloads import NOOP, ClusterLoad, offer_open_loop
from tools.procfs import cpu_s, machine_times, rss_mib

SAMPLE_EVERY_S = 0.25
STEADY_SAMPLE_EVERY_S = 5.0
WINDOW_S = 60.0  # the first and the last minute of a steady run are compared
MACHINE, STEAL = "machine", "steal"  # the whole machine's entries among the CPU shares


class ResourceSampler:
    """Samples every node's memory and CPU time in the background; `mark` names a moment."""

    def __init__(self, pids: Mapping[str, int], every_s: float = SAMPLE_EVERY_S, *,
                 cpu_only: Mapping[str, int] | None = None) -> None:
        """`pids`: processes whose memory and CPU are sampled; `cpu_only`: processes whose CPU alone is."""
        self.pids = dict(pids)
        self.cpu_pids = {**(cpu_only or {}), **self.pids}
        self.every_s = every_s
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in self.pids}
        self.cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in [*self.cpu_pids, MACHINE, STEAL]}
        self.marks: dict[str, dict[str, float | None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="resource-sampler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.sample()

    def mark(self, moment: str) -> None:
        self.marks[moment] = {name: rss_mib(pid) for name, pid in self.pids.items()}

    def sample(self) -> None:
        now = time.monotonic()
        for name, pid in self.pids.items():
            value = rss_mib(pid)
            if value is not None:
                self.samples[name].append((now, value))
        for name, pid in self.cpu_pids.items():
            used = cpu_s(pid)
            if used is not None:
                self.cpu[name].append((now, used))
        machine = machine_times()
        if machine is not None:
            self.cpu[MACHINE].append((now, machine.busy_s))
            self.cpu[STEAL].append((now, machine.steal_s))

    def peak(self) -> dict[str, float | None]:
        return {name: max((v for _, v in s), default=None) for name, s in self.samples.items()}

    def cpu_share(self, begin: float, end: float) -> dict[str, float | None]:
        """CPU seconds per wall second between two monotonic times: each process's, the machine's."""
        return {name: busy_share(samples, begin, end) for name, samples in self.cpu.items()}

    async def _run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(self.every_s)


def busy_share(samples: list[tuple[float, float]], begin: float, end: float) -> float | None:
    """CPU seconds per wall second between the samples nearest inside [begin, end]; for a window
    too short to hold two samples (a small drain), between the nearest ones around it."""
    inside = [(t, used) for t, used in samples if begin <= t <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        before = [(t, used) for t, used in samples if t <= begin]
        after = [(t, used) for t, used in samples if t >= end]
        if not before or not after or after[0][0] <= before[-1][0]:
            return None
        inside = [before[-1], after[0]]
    (t0, used0), (t1, used1) = inside[0], inside[-1]
    return round((used1 - used0) / (t1 - t0), 3)


def growth(samples: list[tuple[float, float]], window_s: float = WINDOW_S) -> dict[str, Any]:
    """First-minute and last-minute averages of one node's samples, and the change between them."""
    if len(samples) < 2:
        return {"samples": len(samples)}
    begin, end = samples[0][0], samples[-1][0]
    first = [v for t, v in samples if t - begin <= window_s]
    last = [v for t, v in samples if end - t <= window_s]
    first_avg, last_avg = sum(first) / len(first), sum(last) / len(last)
    minutes = max((end - begin) / 60, 1e-9)
    return {
        "samples": len(samples),
        "first_minute_mib": round(first_avg, 1),
        "last_minute_mib": round(last_avg, 1),
        "max_mib": max(v for _, v in samples),
        "growth_mib": round(last_avg - first_avg, 1),
        "growth_mib_per_hour": round((last_avg - first_avg) / minutes * 60, 1),
    }


async def run_steady(load: ClusterLoad, pids: Mapping[str, int], *, rate_per_s: float,
                     duration_s: float) -> dict[str, Any]:
    """Offer `rate_per_s` single submits for `duration_s`, sampling every node's memory."""
    progress(f"memory: steady run, {rate_per_s:g} jobs/s for {duration_s:g}s")
    sampler = ResourceSampler(pids, STEADY_SAMPLE_EVERY_S)
    outcomes = {"acknowledged": 0, "refused": 0}

    async def one() -> None:
        try:
            await load.client().submit(**NOOP)
            outcomes["acknowledged"] += 1
        except Exception:  # a 429/503 under a burst: counted, and the run goes on
            outcomes["refused"] += 1

    n = int(duration_s * rate_per_s)
    loop = asyncio.get_running_loop()
    begin = loop.time()
    sampler.start()
    try:
        await offer_open_loop(n, rate_per_s, lambda _: one())
    finally:
        await sampler.stop()
    depths = await load.queue.depths()
    report = {
        "rate_per_s": rate_per_s,
        "seconds": duration_s,
        "offered": n,
        **outcomes,
        "sample_every_s": STEADY_SAMPLE_EVERY_S,
        "rss": {name: growth(samples) for name, samples in sampler.samples.items()},
        "cpu_share": sampler.cpu_share(float("-inf"), float("inf")),
        # State changes not yet in MongoDB when the load stopped: above a few hundred, the
        # store could not keep up with the offered rate (the node's memory is not where they wait).
        "outbox_backlog_at_end": depths["outbox"],
        "ready_at_end": depths["ready"],
    }
    try:
        await load.wait_finished("steady run")
        report["caught_up_after_s"] = round(loop.time() - begin - duration_s, 1)
    except TimeoutError as exc:  # the figures above stand; the store is far behind
        report["caught_up_after_s"] = None
        progress(f"memory: {exc}")
    return report


class CpuWatch:
    """CPU shares of some processes over a workload, and which was busiest (what limited it).

    `async with CpuWatch(pids) as watch:` samples while the block runs; `window(begin, end)`
    (epoch seconds) narrows the shares to part of it, e.g. from a drain's start instant to its
    last finish. `report()` gives `cpu_share` (as `ResourceSampler.cpu_share`) and `busiest`."""

    def __init__(self, pids: Mapping[str, int], every_s: float = 0.1) -> None:
        self.sampler = ResourceSampler({}, every_s, cpu_only={name: pid for name, pid in pids.items() if pid})
        self.begin = self.end = 0.0
        self._window: tuple[float, float] | None = None

    async def __aenter__(self) -> CpuWatch:
        self.sampler.sample()
        self.begin = time.monotonic()
        self.sampler.start()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.sampler.stop()
        self.end = time.monotonic()

    def window(self, begin_epoch_s: float, end_epoch_s: float) -> None:
        offset = time.monotonic() - time.time()
        self._window = (begin_epoch_s + offset, end_epoch_s + offset)

    def report(self) -> dict[str, Any]:
        begin, end = self._window or (self.begin, self.end)
        shares = self.sampler.cpu_share(begin - self.sampler.every_s, end + self.sampler.every_s)
        return {"cpu_share": shares, "busiest": busiest(shares)}


def busiest(shares: Mapping[str, float | None]) -> dict[str, Any] | None:
    """The process that used the most CPU among the shares (the machine's own entries aside):
    near 1.0 it was the limit (one event loop or one core), and `machine` near the CPU count
    says the box was."""
    processes = {name: share for name, share in shares.items() if share is not None and name not in (MACHINE, STEAL)}
    if not processes:
        return None
    name = max(processes, key=lambda key: processes[key])
    cpus = os.cpu_count() or 1
    machine = shares.get(MACHINE)
    return {"process": name, "cpu_share": processes[name],
            "machine_saturated": machine is not None and machine >= 0.9 * cpus}


def cpu_ms_per_job(shares: Mapping[str, float | None], seconds: float, jobs: int) -> float | None:
    """CPU milliseconds per job that the system under test used (nodes and servers, not the
    bench, not other tenants of the machine): a cost that a busy box moves less than the rate."""
    used = [share for name, share in shares.items() if share is not None and name not in (MACHINE, STEAL, "bench")]
    if not used or jobs <= 0:
        return None
    return round(sum(used) * seconds * 1000 / jobs, 3)
