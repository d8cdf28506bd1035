"""What Linux's /proc says about a process (its resident memory and CPU time) and about the machine's CPUs.

Used by the benchmark, scripts/chaos.py and the overload test to watch node processes, and by
the benchmark to tell how busy the whole machine was.
Elsewhere than on Linux, or for a process that is gone, the answers are None.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_mib(pid: int) -> float | None:
    """The process's resident set in MiB (one decimal), or None if it cannot be read."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def cpu_s(pid: int) -> float | None:
    """CPU time (user + system) the process has used so far, in seconds, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            # Fields after the command name (which may hold spaces) start at the state.
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


@dataclass(frozen=True)
class MachineTimes:
    """CPU seconds of the whole machine since boot, summed over its cores (the first line of /proc/stat)."""

    busy_s: float  # every state but idle and iowait: user, nice, system, irq, softirq, steal
    steal_s: float  # taken by the hypervisor for other guests while this one wanted to run
    total_s: float


def machine_times() -> MachineTimes | None:
    """The machine's CPU times now, or None where /proc/stat cannot be read."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(value) for value in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(fields) < 8:
        return None
    # user nice system idle iowait irq softirq steal (guest time is already inside user)
    idle = fields[3] + fields[4]
    total = sum(fields)
    return MachineTimes(busy_s=(total - idle) / CLOCK_TICKS_PER_S, steal_s=fields[7] / CLOCK_TICKS_PER_S,
                        total_s=total / CLOCK_TICKS_PER_S)
