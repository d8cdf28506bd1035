"""The chaos processor: runs a job and appends what it did to a record outside the system under test.

`history` jobs carry `{"record_dir": ..., "hold_ms": ..., "fail": bool}`. Each run appends two
JSON lines to `<record_dir>/<node>-<pid>.jsonl`: `start` before the work and `end` after it
(also when the run is cancelled because the job was taken away). A run whose process was
killed has a `start` and no `end`; the checker (tools/chaos/history.py) ends it at the kill.

Why no fsync: the record has to survive kill -9 of the node that writes it, not a crash of
the machine. Each line is one `write(2)` on an O_APPEND descriptor; once `write` returns, the
bytes are in the kernel's page cache, which outlives the process. A line is never half
written by a kill (the signal is taken between system calls), and lines from concurrent
workers never interleave (O_APPEND moves to the end and writes in one step).

Times are CLOCK_MONOTONIC seconds: on Linux one clock for every process on the machine, so
the test process can compare them with the moments it injected faults. Only the checker
compares them; jobnode itself never compares clocks of two machines (see jobnode/storage/redis/lease.py).

Node processes load this processor through the `jobnode.processors` entry point group, from
a tiny distribution that `install_plugin` writes into a directory put on their PYTHONPATH:
the installed package stays free of test code.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson

from jobnode.core.job import Job
from jobnode.processors.registry import ENTRY_POINT_GROUP, PermanentError

TYPE = "history"
REPO_ROOT = Path(__file__).resolve().parents[2]
DIST_NAME = "jobnode_chaos_history"


def monotonic_s() -> float:
    """The clock every record and fault time uses (shared by all processes on this machine)."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class HistoryProcessor:
    """Holds for `hold_ms`, fails permanently when told to, and records every run."""

    type = TYPE

    def __init__(self) -> None:
        self._files: dict[str, int] = {}

    async def process(self, job: Job) -> Any:
        payload = job.payload
        line = {"job": job.id, "worker": job.worker_id, "node": job.node_id, "pid": os.getpid(),
                "attempt": job.attempts}
        self._append(payload["record_dir"], {**line, "event": "start", "t": monotonic_s()})
        outcome = "cancelled"
        try:
            await asyncio.sleep(float(payload.get("hold_ms", 0)) / 1000)
            if payload.get("fail"):
                outcome = "failed"
                raise PermanentError("told to fail")
            outcome = "completed"
            return {"ran_on": job.worker_id}
        finally:
            self._append(payload["record_dir"], {**line, "event": "end", "t": monotonic_s(), "outcome": outcome})

    def _append(self, record_dir: str, line: dict[str, Any]) -> None:
        fd = self._files.get(record_dir)
        if fd is None:
            path = Path(record_dir) / f"{line['node']}-{os.getpid()}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._files[record_dir] = fd
        os.write(fd, orjson.dumps(line) + b"\n")

    async def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()


def install_plugin(plugin_dir: Path) -> str:
    """Write a distribution declaring the `history` processor; returns the PYTHONPATH nodes need."""
    dist_info = plugin_dir / f"{DIST_NAME}-0.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST_NAME}\nVersion: 0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n{TYPE} = tools.chaos.recording:HistoryProcessor\n")
    return os.pathsep.join([str(plugin_dir), str(REPO_ROOT)])


def payload(record_dir: Path, hold_ms: int, *, fail: bool = False) -> dict[str, Any]:
    return {"record_dir": str(record_dir), "hold_ms": hold_ms, "fail": fail}
