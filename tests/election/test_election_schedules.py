"""Randomized fault schedules for every algorithm, checked by `jobnode.election.sim`.

The default run covers 1,000 schedules per algorithm with fixed seeds, so a
failure is reproducible with `python -m jobnode.election.sim replay ALGORITHM SEED`
(the failure message prints it). The `slow` run covers ELECTION_SCHEDULES
(default 10,000, which CI runs; set 100000 for a long soak) per algorithm
on other seeds, using every core. Raft's schedules also change the membership (servers added
through seeds, removed, the leader among them, some as a partition starts); the checks then
hold across configurations.
"""

from __future__ import annotations

import math
import os

import pytest

from jobnode import election
from jobnode.election.sim import check_many, check_schedules, failover_times, random_schedule, summarize

CI_SCHEDULES = 1000
CI_BATCH = 250
SLOW_SCHEDULES = int(os.environ.get("ELECTION_SCHEDULES", "10000"))
SLOW_BATCH = 5000
SLOW_FIRST_SEED = 10_000_000  # disjoint from the default run's seeds


@pytest.mark.parametrize("batch", range(CI_SCHEDULES // CI_BATCH))
@pytest.mark.parametrize("algorithm", election.ALGORITHM_NAMES)
def test_random_schedules(algorithm: str, batch: int) -> None:
    seeds = range(batch * CI_BATCH, (batch + 1) * CI_BATCH)
    times, failures = check_schedules(algorithm, seeds)
    assert not failures, f"{len(failures)} of {len(seeds)} schedules failed; first:\n{failures[0]}"
    assert len(times) == len(seeds)


@pytest.mark.slow
@pytest.mark.parametrize("batch", range(math.ceil(SLOW_SCHEDULES / SLOW_BATCH)))
@pytest.mark.parametrize("algorithm", election.ALGORITHM_NAMES)
def test_random_schedules_nightly(algorithm: str, batch: int) -> None:
    first = SLOW_FIRST_SEED + batch * SLOW_BATCH
    count = min(SLOW_BATCH, SLOW_SCHEDULES - batch * SLOW_BATCH)
    times, failures = check_many(algorithm, first, count, jobs=os.cpu_count() or 1)
    assert not failures, f"{len(failures)} of {count} schedules failed; first:\n{failures[0]}"
    assert len(times) == count


@pytest.mark.parametrize("algorithm", election.ALGORITHM_NAMES)
def test_failover_after_killing_the_leader(algorithm: str) -> None:
    times = failover_times(algorithm, 5, runs=20)
    assert len(times) == 20
    print(f"\n{algorithm} failover, 5 nodes: {summarize(times)}")


def test_membership_schedules_cover_every_kind_of_change() -> None:
    """The random schedules add, remove and depart (the leader too), some during partitions."""
    kinds: set[str] = set()
    for seed in range(60):
        faults = " ".join(random_schedule("raft", seed).faults)
        kinds |= {k for k in ("add n", "remove n", "depart n", "the leader", "partition") if k in faults}
    assert kinds == {"add n", "remove n", "depart n", "the leader", "partition"}
