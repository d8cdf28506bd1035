"""JobStore.list reads newest-first time windows: every job once, in order, whatever the spacing."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta, timezone

from jobnode.core.job import Job, JobSpec
from jobnode.storage.mongo.jobs import FIRST_WINDOW_S, WINDOWED_SPAN_S, JobStore, time_windows

SEED = 2512


def _spread_jobs(now: datetime, rng: random.Random) -> list[Job]:
    """Jobs around every kind of window edge: ahead of `now` (a clock running fast), ties at one
    millisecond, a dense recent stretch, sparse ones, a gap, and some past the windowed span."""
    ages_s: list[float] = [-5.0, -0.5]
    ages_s += [0.0] * 6 + [FIRST_WINDOW_S] * 4  # ties, some exactly on the first window's edge
    ages_s += [rng.uniform(0, 3 * FIRST_WINDOW_S) for _ in range(120)]
    ages_s += [rng.uniform(20 * FIRST_WINDOW_S, 200 * FIRST_WINDOW_S) for _ in range(60)]
    ages_s += [rng.uniform(2 * 86400, 9 * 86400) for _ in range(60)]  # after a gap of a day or more
    ages_s += [WINDOWED_SPAN_S + rng.uniform(0, 90 * 86400) for _ in range(30)]
    jobs = []
    for n, age_s in enumerate(ages_s):
        created = now - timedelta(milliseconds=round(age_s * 1000))
        job = Job.new(JobSpec(type=("echo", "sleep")[n % 2], queue=("default", "bulk")[n % 5 == 0]), now=created)
        jobs.append(dataclasses.replace(job, status=("completed", "failed", "pending")[n % 3]))
    return jobs


async def _all_pages(store: JobStore, now: datetime, page: int, **filters) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(1000):
        jobs, cursor = await store.list(limit=page, cursor=cursor, now=now, **filters)
        seen += [job.id for job in jobs]
        if cursor is None:
            return seen
    raise AssertionError("paging never ended")


async def test_paging_across_windows_returns_every_job_once_newest_first(mongo_db):
    rng = random.Random(SEED)
    now = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    store = JobStore(mongo_db)
    await store.ensure_indexes()
    jobs = _spread_jobs(now, rng)
    assert await store.insert_many(jobs) == [None] * len(jobs)

    def expected(keep) -> list[str]:
        chosen = [job for job in jobs if keep(job)]
        return [job.id for job in sorted(chosen, key=lambda j: (j.created_at, j.id), reverse=True)]

    cases = [
        ({"status": None, "type_": None}, lambda j: True),
        ({"status": "failed", "type_": None}, lambda j: j.status == "failed"),
        ({"status": None, "type_": "sleep"}, lambda j: j.type == "sleep"),
        ({"status": None, "type_": None, "queue": "bulk"}, lambda j: j.queue == "bulk"),
        ({"status": "pending", "type_": "echo"}, lambda j: j.status == "pending" and j.type == "echo"),
    ]
    for page in (7, 50):
        for filters, keep in cases:
            assert await _all_pages(store, now, page, **filters) == expected(keep), (filters, page, f"seed {SEED}")


async def test_a_filter_by_id_pages_like_the_others(mongo_db):
    store = JobStore(mongo_db)
    await store.ensure_indexes()
    job = Job.new(JobSpec(type="echo"))
    await store.insert_many([job])
    jobs, cursor = await store.list(status=None, type_=None, limit=1, cursor=None, job_id=job.id)
    assert [j.id for j in jobs] == [job.id] and cursor is None
    jobs, _ = await store.list(status=None, type_=None, limit=1, cursor=None, job_id="no-such-job")
    assert jobs == []


def test_windows_are_contiguous_and_end_open_past_the_span():
    windows = list(time_windows(lambda: 0, 1))
    assert windows[0] == (0.0, FIRST_WINDOW_S)
    for (_, older), (newer, _) in zip(windows, windows[1:]):
        assert older == newer
    assert windows[-1][1] is None and windows[-1][0] >= WINDOWED_SPAN_S
    assert len(windows) < 12  # an empty result is a handful of queries, not one per day


def test_windows_stop_once_the_page_is_full():
    # What each window read: nothing twice, then a few jobs, then the rest of the page.
    per_window, found = [0, 0, 3, 60], [0]
    windows = []
    for window in time_windows(lambda: found[0], 51):
        windows.append(window)
        found[0] += per_window[len(windows) - 1]
    assert len(windows) == 4
