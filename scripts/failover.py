#!/usr/bin/env python3
"""Measure one leader failover of a running `jobnode dev` cluster; helper of test-algorithms.sh.

  failover.py free-ports N             two base ports, each with N free ports above it
  failover.py measure --cluster-file F --algorithm A [--rate R] [--warmup S]
                                       kill -9 the leader under load, print one JSON line
  failover.py summarize RESULTS.jsonl  the median of every measure per algorithm, as a table

What `measure` reports (seconds after the SIGKILL, taken on this host's clocks; the first two
are polled every ~20ms plus an HTTP round trip, so they are late by up to a few tens of ms):
  election_s        every surviving node names the same new leader in GET /api/v1/leader
  lease_s           that new leader holds the fenced lease (GET /api/v1/leader -> lease.holder)
  first_dispatch_s  the earliest `started_at` among the jobs submitted after the kill. No
                    such job can have been dispatched by the dead leader, so this is when
                    the new leader's first dispatch reached a worker and the job started,
                    provided the nodes run with LOCAL_START=false (the callers see to it):
                    with local start a survivor starts a job submitted to it on its own idle
                    worker while the election is still under way.
                    `started_at` is stamped by the nodes' clock, which on one host is the
                    clock the kill time is read from.
It also checks that every acknowledged job completed, and exits 1 if one did not.

Standard library only, so it runs with any Python 3.9+ whatever is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

HTTP_TIMEOUT_S = 2.0
POLL_INTERVAL_S = 0.02
TERMINAL = {"completed", "failed", "cancelled"}


class Unreachable(Exception):
    """A node did not answer usefully."""


def request(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json",
                                                                         **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raise Unreachable(f"{method} {url} answered {exc.code}: {exc.read()[:200]!r}") from None
    except (OSError, ValueError) as exc:
        raise Unreachable(f"{method} {url} failed: {exc}") from None


def epoch_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- the cluster ------------------------------------------------------------------------

def read_cluster(path: Path, timeout_s: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"failover.py: {path} did not appear within {timeout_s:g}s")
        time.sleep(0.2)
    return json.loads(path.read_text())["nodes"]


def views(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {node["id"]: request("GET", node["url"] + "/api/v1/leader") for node in nodes}


def agreed_leader(nodes: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """(the leader every node names, or None; the lease holder)."""
    try:
        seen = views(nodes)
    except Unreachable:
        return None, None
    named = {view["leader_id"] for view in seen.values()}
    lease = next(iter(seen.values())).get("lease") or {}
    leader = named.pop() if len(named) == 1 else None
    return leader, lease.get("holder")


def wait_for_leader(nodes: list[dict[str, Any]], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        leader, holder = agreed_leader(nodes)
        if leader and holder == leader:
            return leader
        time.sleep(0.1)
    raise SystemExit("failover.py: the cluster never agreed on a leader holding the lease")


# -- load -------------------------------------------------------------------------------

class Load(threading.Thread):
    """Submits short `sleep` jobs at a steady rate, round-robin over some nodes."""

    def __init__(self, urls: list[str], rate_per_s: float, run_tag: str) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.interval_s = 1 / rate_per_s
        self.run_tag = run_tag
        self.acked: list[tuple[str, float]] = []  # (job id, wall time the submit was sent)
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            url = self.urls[n % len(self.urls)]
            sent = time.time()
            body = {"type": "sleep", "payload": {"seconds": 0.05}}
            try:
                job = request("POST", url + "/api/v1/jobs", body, {"Idempotency-Key": f"{self.run_tag}-{n}"})
                self.acked.append((job["id"], sent))
            except Unreachable as exc:
                self.failures.append(str(exc))
            n += 1
            next_at += self.interval_s
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def wait_finished(url: str, job_ids: list[str], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Poll until every job is terminal (or the deadline); returns the last state of each."""
    jobs: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    pending = list(job_ids)
    while pending and time.monotonic() < deadline:
        still = []
        for job_id in pending:
            try:
                jobs[job_id] = request("GET", f"{url}/api/v1/jobs/{job_id}")
            except Unreachable:
                still.append(job_id)
                continue
            if jobs[job_id]["status"] not in TERMINAL:
                still.append(job_id)
        pending = still
        if pending:
            time.sleep(0.2)
    return jobs


# -- one measurement --------------------------------------------------------------------

def measure(args: argparse.Namespace) -> int:
    nodes = read_cluster(Path(args.cluster_file), args.startup_timeout)
    old = wait_for_leader(nodes, args.startup_timeout)
    victim = next(node for node in nodes if node["id"] == old)
    survivors = [node for node in nodes if node["id"] != old]
    load = Load([node["url"] for node in survivors], args.rate, f"failover-{os.getpid()}-{time.time_ns()}")
    load.start()
    time.sleep(args.warmup)  # a benchmark's warm-up, not synchronisation: jobs are flowing by now

    before_kill = len(load.acked)
    kill_wall, kill_mono = time.time(), time.monotonic()
    os.kill(victim["pid"], signal.SIGKILL)
    election_s = lease_s = None
    new = None
    deadline = kill_mono + args.timeout
    while (election_s is None or lease_s is None) and time.monotonic() < deadline:
        leader, holder = agreed_leader(survivors)
        now = time.monotonic() - kill_mono
        if leader and leader != old and election_s is None:
            new, election_s = leader, now
        if holder and holder != old and lease_s is None:
            lease_s = now
        time.sleep(POLL_INTERVAL_S)
    time.sleep(args.after)  # let the new leader dispatch a good share of the load too
    load.stop.set()
    load.join()

    jobs = wait_finished(survivors[0]["url"], [job_id for job_id, _ in load.acked], args.timeout)
    after_kill = [jobs[job_id] for job_id, sent in load.acked[before_kill:] if sent >= kill_wall and job_id in jobs]
    starts = [epoch_s(job["started_at"]) for job in after_kill if job.get("started_at")]
    not_done = [job_id for job_id, _ in load.acked if jobs.get(job_id, {}).get("status") != "completed"]
    result = {
        "algorithm": args.algorithm,
        "old_leader": old,
        "new_leader": new,
        "election_s": _round(election_s),
        "lease_s": _round(lease_s),
        "first_dispatch_s": _round(min(starts) - kill_wall if starts else None),
        "acked": len(load.acked),
        "completed": len(load.acked) - len(not_done),
        "not_completed": not_done[:20],
        "submit_failures": len(load.failures),
    }
    print(json.dumps(result), flush=True)
    print(f"  {args.label}: {old} killed -> {new}: election {result['election_s']}s, lease {result['lease_s']}s, "
          f"first dispatch {result['first_dispatch_s']}s; {result['completed']}/{result['acked']} acknowledged "
          f"jobs completed", file=sys.stderr, flush=True)
    return 0 if not not_done and new is not None else 1


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# -- summary and ports ------------------------------------------------------------------

def summarize(args: argparse.Namespace) -> int:
    runs: dict[str, list[dict[str, Any]]] = {}
    for line in Path(args.results).read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            runs.setdefault(row["algorithm"], []).append(row)
    print(f"{'algorithm':<10} {'runs':>4} {'election s':>11} {'lease s':>8} {'1st dispatch s':>15} "
          f"{'acked':>6} {'completed':>9}")
    for algorithm, rows in runs.items():
        print(f"{algorithm:<10} {len(rows):>4} {_median(rows, 'election_s'):>11} {_median(rows, 'lease_s'):>8} "
              f"{_median(rows, 'first_dispatch_s'):>15} {sum(r['acked'] for r in rows):>6} "
              f"{sum(r['completed'] for r in rows):>9}")
    print("medians of seconds after kill -9 of the leader; acked/completed are totals over the runs")
    return 0 if all(r["acked"] == r["completed"] for rows in runs.values() for r in rows) else 1


def _median(rows: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None]
    missing = len(rows) - len(values)
    text = f"{statistics.median(values):.3f}" if values else "-"
    return text + (f" ({missing} none)" if missing else "")


def free_ports(args: argparse.Namespace) -> int:
    """Print two base ports, each followed by `count` free ports, not overlapping."""
    bases: list[int] = []
    taken: set[int] = set()
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = sock.getsockname()[1]
        span = set(range(base, base + args.count))
        if base + args.count < 65536 and not span & taken and all(_is_free(p) for p in span):
            bases.append(base)
            taken |= span
            if len(bases) == 2:
                print(*bases)
                return 0
    print("failover.py: no free port range found", file=sys.stderr)
    return 1


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("measure", help="kill -9 the leader under load and time the failover")
    run.add_argument("--cluster-file", required=True)
    run.add_argument("--algorithm", required=True)
    run.add_argument("--rate", type=float, default=20.0, help="jobs submitted per second (default 20)")
    run.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the kill (default 2)")
    run.add_argument("--after", type=float, default=2.0,
                     help="seconds of load after the new leader holds the lease (default 2)")
    run.add_argument("--timeout", type=float, default=60.0, help="limit of each wait, seconds (default 60)")
    run.add_argument("--startup-timeout", type=float, default=120.0)
    run.add_argument("--label", default="run", help="how the human-readable line names this run")
    run.set_defaults(handler=measure)
    summary = commands.add_parser("summarize", help="median of each measure per algorithm")
    summary.add_argument("results")
    summary.set_defaults(handler=summarize)
    ports = commands.add_parser("free-ports", help="two base ports with COUNT free ports each")
    ports.add_argument("count", type=int)
    ports.set_defaults(handler=free_ports)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
