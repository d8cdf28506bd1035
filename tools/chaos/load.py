"""The chaos load generator: submits `history` jobs at a steady rate and records what was acknowledged.

A submission counts as acknowledged only on a 2xx answer; its id goes into `acked` with the
outcome the checker must see (`failed` for the share of jobs told to fail). Anything else
is counted in `refused` by kind (`503`, `429`, `connection`, `timeout`, ...): under faults a
refusal is fine, a 2xx for a job that is then lost is not. A `500` is recorded as such, so a
test can insist there were none.

Submissions go round robin over the target URLs, each in its own task, so a slow or paused
node does not slow the rate; at most `max_in_flight` are outstanding (the generator sheds
load itself rather than pile up sockets when every node stalls).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from jobnode.core.background import cancel_all
from tools.chaos.recording import TYPE, payload

SUBMIT_TIMEOUT_S = 5.0


@dataclass
class LoadGenerator:
    """Submits at `rate_per_s` to the URLs `targets()` returns (re-read before each submit)."""

    targets: Callable[[], list[str]]
    record_dir: Path
    rate_per_s: float = 10.0
    hold_ms: int = 50
    fail_every: int = 0  # every n-th job is told to fail (0: none)
    max_in_flight: int = 50
    headers: dict[str, str] = field(default_factory=dict)  # e.g. an Authorization header
    acked: dict[str, str] = field(default_factory=dict)  # job id -> expected final status
    refused: Counter[str] = field(default_factory=Counter)
    latency_s: dict[str, list[float]] = field(default_factory=dict)  # answer kind -> seconds per submit
    submitted: int = 0
    _task: asyncio.Task[None] | None = None
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None

    def start(self) -> LoadGenerator:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SUBMIT_TIMEOUT_S),
                                              headers=self.headers)
        self._task = asyncio.create_task(self._run(), name="load")
        return self

    async def stop(self) -> None:
        """Stop submitting and wait for the submissions still in flight to be answered."""
        if self._task is not None:
            await cancel_all([self._task])  # until gone: a swallowed cancel must not hang the test
        if self._inflight:
            await asyncio.wait(self._inflight)
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval_s = 1.0 / self.rate_per_s
        next_at = loop.time()
        while True:
            targets = self.targets()
            if len(self._inflight) >= self.max_in_flight:
                self.refused["shed_by_generator"] += 1
            elif targets:
                n = self.submitted
                self.submitted += 1
                task = asyncio.create_task(self._submit(targets[n % len(targets)], n))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _submit(self, url: str, n: int) -> None:
        fail = bool(self.fail_every) and n % self.fail_every == self.fail_every - 1
        body = {"type": TYPE, "payload": payload(self.record_dir, self.hold_ms, fail=fail)}
        assert self._session is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        kind = "2xx"
        try:
            async with self._session.post(f"{url}/api/v1/jobs", json=body) as resp:
                if 200 <= resp.status < 300:
                    self.acked[(await resp.json())["id"]] = "failed" if fail else "completed"
                else:
                    kind = str(resp.status)
        except asyncio.TimeoutError:
            kind = "timeout"
        except aiohttp.ClientError:
            kind = "connection"
        if kind != "2xx":
            self.refused[kind] += 1
        self.latency_s.setdefault(kind, []).append(loop.time() - started)

    def latency_summary(self) -> dict[str, dict[str, float]]:
        """Per kind of answer: count, median and 99th percentile latency in seconds."""
        summary = {}
        for kind, values in self.latency_s.items():
            ordered = sorted(values)
            summary[kind] = {"count": len(ordered), "p50_s": round(ordered[len(ordered) // 2], 3),
                             "p99_s": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)}
        return summary
