"""How each election algorithm scales with the cluster's size, in the simulated network.

For bully, raft and gossip at 3, 9, 25 and 50 nodes, with each algorithm's default timers
(jobnode/election/config.py) and message delays of 0.5-5 ms:

- start: simulated seconds from a cold start until every node names the same leader;
- failover: seconds from a crash of the settled leader until the rest agree on a new one;
- msgs/node/s: messages a node sends per second in steady state (10 simulated seconds after
  the cluster settled), on average and for the busiest node (raft's and bully's leader
  heartbeats every member, so its load grows with the cluster while the average does not).

The simulator is pure and seeded, so the table is the same on every machine; a cell that
fails prints the seed to replay. Usage: `python -m tools.election_scale [--runs 5] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from jobnode.election.sim import LivenessViolation, SafetyViolation, Simulation, _raft_leader

ALGORITHMS = ("bully", "raft", "gossip")
SIZES = (3, 9, 25, 50)
STEADY_S = 10.0
DELAY_S = (0.0005, 0.005)


@dataclass
class Cell:
    algorithm: str
    nodes: int
    runs: int
    start_median_s: float
    start_max_s: float
    failover_median_s: float
    failover_max_s: float
    messages_per_node_per_s: float
    busiest_node_per_s: float


class CountingSimulation(Simulation):
    """The simulator, counting the messages each node sends."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent_by: Counter[str] = Counter()
        super().__init__(*args, **kwargs)

    def _transmit(self, node: Any, msg: Any) -> None:
        self.sent_by[node.node_id] += 1
        super()._transmit(node, msg)


def measure(algorithm: str, n: int, seed: int) -> tuple[float, float, float, float]:
    """(cold-start convergence, failover, steady messages per node per second on average and of
    the busiest node) for one seed."""
    sim = CountingSimulation(algorithm, n, seed=seed, delay_s=DELAY_S)
    try:
        start_s = sim.wait_for_convergence(stable_s=0)
        sim.run_for(sim.config.election_timeout_s)  # settle before counting
        sent, before = sim.messages_sent, Counter(sim.sent_by)
        sim.run_for(STEADY_S)
        per_node_s = (sim.messages_sent - sent) / n / STEADY_S
        busiest_s = max((sim.sent_by - before).values()) / STEADY_S
        leader = _raft_leader(sim) if algorithm == "raft" else sim.leaders()[sim.live()[0]]
        sim.crash(leader)
        failover_s = sim.wait_for_convergence(stable_s=0)
    except (SafetyViolation, LivenessViolation) as failure:
        raise SystemExit(f"{algorithm} n={n} seed={seed}: {failure}") from None
    return start_s, failover_s, per_node_s, busiest_s


def cell(algorithm: str, n: int, runs: int) -> Cell:
    results = [measure(algorithm, n, seed) for seed in range(runs)]
    starts, failovers, rates, busiest = ([r[i] for r in results] for i in range(4))
    return Cell(algorithm, n, runs, round(statistics.median(starts), 3), round(max(starts), 3),
                round(statistics.median(failovers), 3), round(max(failovers), 3),
                round(statistics.median(rates), 1), round(statistics.median(busiest), 1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.election_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="seeds per cell (0..runs-1)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--json", action="store_true", help="one JSON object per cell")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",")]
    if not args.json:
        print("| algorithm | nodes | start median / max (s) | failover median / max (s) | msgs/node/s | busiest node msgs/s |")
        print("|---|---:|---:|---:|---:|---:|")
    for algorithm in ALGORITHMS:
        for n in sizes:
            began = time.perf_counter()
            found = cell(algorithm, n, args.runs)
            if args.json:
                print(json.dumps({**asdict(found), "wall_s": round(time.perf_counter() - began, 1)}))
            else:
                print(f"| {algorithm} | {n} | {found.start_median_s:.3f} / {found.start_max_s:.3f} | "
                      f"{found.failover_median_s:.3f} / {found.failover_max_s:.3f} | "
                      f"{found.messages_per_node_per_s:.1f} | {found.busiest_node_per_s:.1f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
