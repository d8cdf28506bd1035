"""Sampling profiles of running processes with py-spy, reduced to their top costs.

py-spy attaches to a pid from outside (it needs ptrace: root, or CAP_SYS_PTRACE), so the
nodes run unchanged. It records collapsed stacks ("frame;frame;leaf count"); the report
keeps the functions with the most samples on top of the stack (self) and on the stack at
all (inclusive, leaving out frames on 80% or more of the stacks: the entry points). Idle time (a loop waiting in epoll) is not sampled, so `busy_share` is
the share of wall time the process was running Python or native code.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tools.bench.cluster import progress
from tools.procfs import cpu_s

RATE_HZ = 100
TOP = 5
SPINE_SHARE = 0.8


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """py-spy recordings of some processes between start() and stop()."""

    def __init__(self, targets: dict[str, int], out_dir: Path) -> None:
        self.targets = targets
        self.out_dir = out_dir
        self.recorders: dict[str, subprocess.Popen[bytes]] = {}
        self.started = 0.0
        self.seconds = 0.0
        self.recorder_cpu_s = 0.0
        self.error: str | None = None

    def start(self) -> None:
        binary = _py_spy()
        if binary is None:
            self.error = "py-spy is not installed (pip install -e '.[bench]')"
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.targets.items():
            command = [binary, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw",
                       "--nonblocking", "--output", str(self.out_dir / f"{name}.txt")]
            self.recorders[name] = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                                    stderr=open(self.out_dir / f"{name}.py-spy.log", "wb"))
        self.started = time.monotonic()
        progress(f"profiling {', '.join(f'{n} (pid {p})' for n, p in self.targets.items())} with py-spy")

    def stop(self) -> None:
        self.seconds = time.monotonic() - self.started
        # py-spy shares the machine with what it watches: its own CPU says how much it took.
        self.recorder_cpu_s = sum(cpu_s(r.pid) or 0.0 for r in self.recorders.values())
        for recorder in self.recorders.values():
            if recorder.poll() is None:
                recorder.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
        for recorder in self.recorders.values():
            try:
                recorder.wait(60)
            except subprocess.TimeoutExpired:
                recorder.kill()

    def report(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        reports: dict[str, Any] = {"seconds": round(self.seconds, 2), "rate_hz": RATE_HZ,
                                   "files": str(self.out_dir),
                                   "py_spy_cpu_share": round(self.recorder_cpu_s / self.seconds, 3)
                                   if self.seconds else None}
        for name in self.targets:
            path = self.out_dir / f"{name}.txt"
            reports[name] = top_costs(path, self.seconds) if path.exists() else {
                "error": f"py-spy wrote no profile; see {self.out_dir / f'{name}.py-spy.log'}"}
        return reports


def top_costs(path: Path, seconds: float) -> dict[str, Any]:
    """The functions with the most samples in a collapsed-stack file."""
    self_samples: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if not frame.startswith("process ")]
        total += count
        if frames:
            self_samples[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "share": round(n / total, 3)} for f, n in counter.most_common(TOP)]

    # The spine every stack shares (runpy, main, the event loop's run) says nothing: left out.
    branches = Counter({frame: n for frame, n in inclusive.items() if n < SPINE_SHARE * total})
    return {"samples": total, "busy_share": round(total / (RATE_HZ * seconds), 3) if seconds else None,
            "top_self": share(self_samples) if total else [], "top_inclusive": share(branches) if total else []}
