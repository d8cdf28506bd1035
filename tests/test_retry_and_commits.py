"""Retry back-off bounds and group-commit batching."""

from __future__ import annotations

import asyncio
import random

import pytest

from jobnode.api.errors import from_exception
from jobnode.core.background import Backoff
from jobnode.pipeline.circuit import Circuit
from jobnode.pipeline.commits import GroupCommit
from jobnode.core.errors import Overloaded
from jobnode.pipeline.retry import RetryPolicy
from tests.waiting import wait_until


@pytest.mark.parametrize("attempt, base", [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (10_000, 60.0)])
def test_exponential_delay_stays_within_its_jitter_band(attempt, base):
    policy = RetryPolicy("exponential", base_delay_s=1.0, max_delay_s=60.0, multiplier=2.0, jitter_factor=0.1)
    rng = random.Random(attempt)
    delays = [policy.delay_s(attempt, rng) for _ in range(2000)]
    assert min(delays) >= base * 0.9 and max(delays) <= base * 1.1
    assert max(delays) - min(delays) > base * 0.1  # jitter really spreads retries out


def test_fixed_delay_ignores_the_attempt_number():
    policy = RetryPolicy("fixed", base_delay_s=3.0, jitter_factor=0.0)
    assert {policy.delay_s(n) for n in (1, 2, 50)} == {3.0}


def test_zero_jitter_is_exact():
    policy = RetryPolicy("exponential", base_delay_s=0.5, multiplier=3.0, max_delay_s=100, jitter_factor=0)
    assert [policy.delay_s(n) for n in (1, 2, 3)] == [0.5, 1.5, 4.5]


async def test_concurrent_callers_share_flushes_and_get_their_own_results():
    flushes: list[list[int]] = []
    gate = asyncio.Event()

    async def flush(items: list[int]):
        flushes.append(items)
        await gate.wait()  # hold the first flush so the others queue up behind it
        return [item * 10 if item != 13 else ValueError("unlucky") for item in items]

    commits: GroupCommit[int, int] = GroupCommit(flush, max_batch=50)
    commits.start()
    first = asyncio.create_task(commits.submit(0))
    await asyncio.sleep(0)  # let the flusher take item 0
    rest = [asyncio.create_task(commits.submit(i)) for i in range(1, 100)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(first, *rest, return_exceptions=True)
    assert results[12] == 120 and isinstance(results[13], ValueError)
    assert [len(batch) for batch in flushes] == [1, 50, 49]
    await commits.stop()


async def test_a_failed_flush_fails_every_caller_of_that_batch():
    async def flush(items):
        raise ConnectionError("database down")

    commits: GroupCommit[int, int] = GroupCommit(flush, max_batch=10)
    commits.start()
    results = await asyncio.gather(*(commits.submit(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    await commits.stop()


async def test_submissions_beyond_the_waiting_limit_are_refused_at_once_and_accepted_again_later():
    gate = asyncio.Event()

    async def flush(items: list[int]):
        await gate.wait()  # a database that cannot keep up
        return items

    commits: GroupCommit[int, int] = GroupCommit(flush, max_batch=2, max_waiting=4)
    commits.start()
    held = [asyncio.create_task(commits.submit(i)) for i in range(4)]
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as refused:
        await commits.submit(99)
    assert refused.value.retry_after_s > 0 and refused.value.details == {"waiting": 4, "limit": 4}
    gate.set()
    assert await asyncio.gather(*held) == [0, 1, 2, 3]
    assert await commits.submit(5) == 5
    # One request larger than the limit still goes through when nothing else waits.
    assert await commits.submit_many(list(range(10))) == list(range(10))
    await commits.stop()


async def test_with_several_flushes_in_flight_a_new_item_does_not_wait_for_a_slow_flush():
    gates: dict[int, asyncio.Event] = {}
    started: list[list[int]] = []

    async def flush(items: list[int]):
        started.append(items)
        gates.setdefault(items[0], asyncio.Event())
        await gates[items[0]].wait()
        return [i * 10 for i in items]

    commits: GroupCommit[int, int] = GroupCommit(flush, max_batch=10, max_inflight=2)
    commits.start()
    first = asyncio.create_task(commits.submit(1))
    await wait_until(lambda: len(started) == 1, timeout_s=5, message="the first flush starts")
    second = asyncio.create_task(commits.submit(2))  # leaves while flush [1] is still open
    await wait_until(lambda: len(started) == 2, timeout_s=5, message="a second flush starts beside it")
    rest = [asyncio.create_task(commits.submit(i)) for i in (3, 4, 5)]  # both slots busy: they batch
    await asyncio.sleep(0)
    assert started == [[1], [2]]
    gates.setdefault(2, asyncio.Event()).set()
    assert await second == 20 and not first.done()  # finished out of order, each its own result
    await wait_until(lambda: len(started) == 3, timeout_s=5, message="the freed slot takes the batch")
    assert started[2] == [3, 4, 5]
    for gate in (1, 3):
        gates.setdefault(gate, asyncio.Event()).set()
    assert await first == 10 and await asyncio.gather(*rest) == [30, 40, 50]
    await commits.stop()


async def test_overloaded_is_a_503_with_retry_after():
    response = from_exception(Overloaded("busy", retry_after_s=1.0))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
    assert b'"overloaded"' in response.body


def test_a_failed_write_opens_the_circuit_for_longer_each_time_and_a_success_closes_it():
    circuit = Circuit(open_s=1.0, max_open_s=4.0)
    assert circuit.refuse_for(100.0) == 0
    circuit.failed(100.0, "mongodb unavailable")
    assert circuit.refuse_for(100.5) == 0.5 and circuit.last_error == "mongodb unavailable"
    circuit.failed(100.5, "again")  # a batch that was in flight when it opened tells nothing new
    assert circuit.failures == 1
    circuit.failed(101.0, "still down")
    assert circuit.refuse_for(101.0) == 2.0
    circuit.failed(103.0, "still down")
    circuit.failed(107.0, "still down")
    assert circuit.refuse_for(107.0) == 4.0  # capped
    circuit.succeeded()
    assert circuit.refuse_for(107.0) == 0 and circuit.failures == 0


def test_backoff_doubles_within_its_cap_with_jitter_and_starts_over_after_a_success():
    backoff = Backoff(base_s=0.5, max_s=5.0, rng=random.Random(7))
    waits = [backoff.next_s() for _ in range(6)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings)), waits
    assert len(set(waits)) == len(waits)  # jittered: nodes that failed together do not retry together
    backoff.reset()
    assert backoff.next_s() <= 0.5
