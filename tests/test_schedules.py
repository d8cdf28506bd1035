"""Schedules: fire times (pure, across DST), validation, the API, fire-once and overlap on a node."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from jobnode.core.errors import ValidationError
from jobnode.core.schedules import Schedule, due_fires, fire_times_after, idempotency_key, jitter_s, parse_schedule
from jobnode.node import NODE_SERVICES
from tests.harness import start_node  # noqa: F401  (a fixture)
from tests.waiting import wait_until

BERLIN = ZoneInfo("Europe/Berlin")
UTC = timezone.utc
TEMPLATE = {"type": "echo", "payload": {}}


def schedule(**fields) -> Schedule:
    base = dict(name="s", cron=None, every_seconds=None, timezone="UTC", job=TEMPLATE,
                created_at=datetime(2026, 1, 1, tzinfo=UTC))
    return Schedule(**{**base, **fields})


def local_fires(s: Schedule, start_local: datetime, end_local: datetime) -> list[datetime]:
    found = []
    for moment in fire_times_after(s, start_local.astimezone(UTC)):
        if moment > end_local.astimezone(UTC):
            return found
        found.append(moment.astimezone(BERLIN))
    return found


# --- fire times across DST (Europe/Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00) ---


def test_a_daily_time_skipped_by_spring_forward_fires_once_at_the_change():
    daily = schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = local_fires(daily, datetime(2026, 3, 28, 12, tzinfo=BERLIN), datetime(2026, 3, 31, 12, tzinfo=BERLIN))
    assert [f.isoformat() for f in fires] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
                                             "2026-03-31T02:30:00+02:00"]


def test_a_daily_time_repeated_by_fall_back_fires_once_but_hourly_fires_every_real_hour():
    daily = schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = local_fires(daily, datetime(2026, 10, 24, 12, tzinfo=BERLIN), datetime(2026, 10, 26, 12, tzinfo=BERLIN))
    assert [f.isoformat() for f in fires] == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]
    hourly = schedule(cron="0 * * * *", timezone="Europe/Berlin")
    day = local_fires(hourly, datetime(2026, 10, 24, 23, 30, tzinfo=BERLIN),
                      datetime(2026, 10, 25, 23, 30, tzinfo=BERLIN))
    assert len(day) == 25  # the day has 25 hours
    assert len({f.astimezone(UTC) for f in day}) == 25
    with_seconds = schedule(cron="*/20 * * * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert [f.second for f in local_fires(with_seconds, start, start + timedelta(minutes=1))] == [20, 40, 0]


def test_catch_up_decides_which_missed_fire_times_run():
    every = schedule(every_seconds=10, last_fire_at=datetime(2026, 1, 1, 0, 0, tzinfo=UTC),
                     catch_up_window_seconds=35)
    now = datetime(2026, 1, 1, 0, 1, 5, tzinfo=UTC)  # 6 fire times due; those from 0:30 on are in the window
    fires, handled = due_fires(dataclasses.replace(every, catch_up="all"), now)
    assert [f.second for f in fires] == [30, 40, 50, 0] and handled == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    fires, handled = due_fires(dataclasses.replace(every, catch_up="one"), now)
    assert [f.second for f in fires] == [0] and handled.second == 0
    # none: only a fire time at most LATE_TOLERANCE_S (5 s) late runs.
    assert [f.second for f in due_fires(dataclasses.replace(every, catch_up="none"), now)[0]] == [0]
    fires, handled = due_fires(dataclasses.replace(every, catch_up="none"), now + timedelta(seconds=2))
    assert fires == [] and handled >= datetime(2026, 1, 1, 0, 1, tzinfo=UTC)  # 0:00 to 1:00 passed over
    # Nothing new is due again: the handled mark is where the next call starts.
    assert due_fires(dataclasses.replace(every, last_fire_at=handled), now) == ([], None)
    assert due_fires(dataclasses.replace(every, paused=True), now) == ([], None)
    # Jitter and the idempotency key depend only on the schedule and the fire time.
    jittered = dataclasses.replace(every, jitter_seconds=30)
    assert jitter_s(jittered, now) == jitter_s(jittered, now) and 0 <= jitter_s(jittered, now) <= 30
    assert jitter_s(jittered, now) != jitter_s(jittered, now + timedelta(seconds=10))
    assert idempotency_key("s", now) == "schedule:s:2026-01-01T00:01:05.000Z"


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "cron": "61 * * * *", "job": TEMPLATE}, "cron"),
    ({"name": "x", "cron": "* * *", "job": TEMPLATE}, "cron"),
    ({"name": "x", "cron": "* * * * *", "every_seconds": 5, "job": TEMPLATE}, "cron"),
    ({"name": "x", "every_seconds": 0, "job": TEMPLATE}, "every_seconds"),
    ({"name": "x", "every_seconds": 5, "timezone": "Mars/Olympus", "job": TEMPLATE}, "timezone"),
    ({"name": "x", "every_seconds": 5, "catch_up_window_seconds": -1, "job": TEMPLATE}, "catch_up_window_seconds"),
    ({"name": "x", "every_seconds": 5, "overlap": "sometimes", "job": TEMPLATE}, "overlap"),
    ({"name": "x", "every_seconds": 5, "jitter_seconds": -2, "job": TEMPLATE}, "jitter_seconds"),
    ({"name": "bad name", "every_seconds": 5, "job": TEMPLATE}, "name"),
    ({"name": "x", "every_seconds": 5, "job": {"type": "echo", "color": 1}}, "job.color"),
])
def test_bad_schedules_are_refused_naming_the_field(body, field):
    with pytest.raises(ValidationError) as refused:
        parse_schedule(body, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert refused.value.field == field


# --- on a node ---


async def jobs_of(node, name):
    found, cursor = [], None
    while True:
        query = "?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        page = await (await node.get(f"/api/v1/jobs{query}")).json()
        found += [job for job in page["jobs"] if job["schedule"] == name]
        cursor = page["next_cursor"]
        if not cursor:
            return sorted(found, key=lambda job: job["scheduled_for"])


async def test_the_schedules_api_and_one_job_per_fire_time_even_for_two_schedulers(start_node):
    node = await start_node()
    for body, field in [({"name": "x", "every_seconds": 1, "job": {"type": "nope"}}, "job.type"),
                        ({"name": "x", "every_seconds": 1, "job": {"type": "echo", "queue": "elsewhere"}},
                         "job.queue"),
                        ({"name": "x", "cron": "99 * * * *", "job": TEMPLATE}, "cron"),
                        ({"name": "x", "every_seconds": 1, "timezone": "Nowhere/Land", "job": TEMPLATE}, "timezone")]:
        resp = await node.post("/api/v1/schedules", json=body)
        assert resp.status == 400, body
        assert (await resp.json())["error"]["details"]["field"] == field
    body = {"name": "tick", "every_seconds": 1, "job": {"type": "echo", "payload": {"n": 1}}, "overlap": "allow",
            "catch_up": "all"}
    resp = await node.post("/api/v1/schedules", json=body)
    assert resp.status == 201
    created = await resp.json()
    assert created["next_fire_at"] and created["paused"] is False and created["timezone"] == "UTC"
    assert (await node.post("/api/v1/schedules", json=body)).status == 409

    async def three():
        jobs = await jobs_of(node, "tick")
        return jobs if len(jobs) >= 3 else None

    jobs = await wait_until(three, timeout_s=15, message="the schedule did not fire three times")
    times = [datetime.fromisoformat(job["scheduled_for"]) for job in jobs]
    assert all((b - a).total_seconds() == 1 for a, b in zip(times, times[1:])), times
    paused = await (await node.post("/api/v1/schedules/tick/pause")).json()
    assert paused["paused"] is True and paused["next_fire_at"] is None

    # Two schedulers firing the same fire times (a leader and one that still thinks it leads)
    # make one job per fire time: the second finds the first's job by its idempotency key.
    services = node.server.app[NODE_SERVICES]
    current = services.schedules.store
    snapshot = dataclasses.replace(await current.get("tick"), paused=False)
    now = datetime.now(UTC) + timedelta(seconds=3)  # a few fire times due
    before = len(await jobs_of(node, "tick"))
    token = services.leadership.token
    for _ in range(2):
        await services.scheduler._fire(snapshot, token, now)
    after = await jobs_of(node, "tick")
    fire_times = [job["scheduled_for"] for job in after]
    assert len(fire_times) == len(set(fire_times)) and len(after) >= before + 3

    changed = await node.put("/api/v1/schedules/tick", json={"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"})
    assert changed.status == 200
    assert (await changed.json())["cron"] == "0 9 * * 1-5" and (await changed.json())["every_seconds"] is None
    listed = await (await node.get("/api/v1/schedules")).json()
    assert [s["name"] for s in listed["schedules"]] == ["tick"]
    assert (await node.delete("/api/v1/schedules/tick")).status == 204
    assert (await node.get("/api/v1/schedules/tick")).status == 404


async def test_overlap_skip_starts_no_run_while_the_last_one_runs(start_node):
    node = await start_node(WORKER_COUNT="4")
    body = {"name": "long", "every_seconds": 1, "overlap": "skip", "catch_up": "all",
            "job": {"type": "sleep", "payload": {"seconds": 1.6}}}
    assert (await node.post("/api/v1/schedules", json=body)).status == 201

    async def two_done():
        jobs = await jobs_of(node, "long")
        return jobs if sum(job["status"] == "completed" for job in jobs) >= 2 else None

    jobs = await wait_until(two_done, timeout_s=20, message="the long schedule did not complete two runs")
    await node.post("/api/v1/schedules/long/pause")
    done = [job for job in jobs if job["finished_at"]]
    spans = sorted((datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"])) for j in done)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    fires = [datetime.fromisoformat(job["scheduled_for"]) for job in jobs]
    assert min((b - a).total_seconds() for a, b in zip(fires, fires[1:])) >= 2  # fire times in between skipped
