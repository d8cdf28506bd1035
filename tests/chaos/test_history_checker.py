"""The history checker itself, on made-up histories: it must catch what it claims to catch."""

from __future__ import annotations

from tools.chaos.history import (
    EndState, Faults, LeaseTiming, Run, Sample, check, disagreements, overlaps, read_runs, regressions,
)
from tools.chaos.recording import HistoryProcessor, payload
from jobnode.core.job import Job, JobSpec

TIMING = LeaseTiming(ttl_s=3.0, worker_ttl_s=1.0, heartbeat_s=0.2)


def run(job: str, worker: str, attempt: int, start: float, end: float | None, pid: int = 1) -> Run:
    return Run(job, worker, worker.split("/")[0], pid, attempt, start, end, "completed" if end else None)


def test_overlapping_runs_under_valid_leases_are_violations():
    runs = {"j": [run("j", "n1/w1", 1, 10.0, 12.0), run("j", "n2/w1", 2, 11.0, 11.5, pid=2)]}
    bad, excused = overlaps(runs, Faults(), TIMING)
    assert len(bad) == 1 and excused == 0


def test_same_attempt_twice_is_a_violation_even_in_a_blackout():
    faults = Faults()
    faults.blackout("sigstop", 9.0, 20.0, ["n1"])
    runs = {"j": [run("j", "n1/w1", 1, 10.0, 20.0), run("j", "n2/w1", 1, 15.0, 15.5, pid=2)]}
    assert len(overlaps(runs, faults, TIMING)[0]) == 1


def test_a_takeover_after_a_long_enough_blackout_is_excused_but_not_a_hasty_one():
    faults = Faults()
    faults.blackout("sigstop", 10.0, 16.0, ["n1"])
    late = {"j": [run("j", "n1/w1", 1, 9.5, 16.1), run("j", "n2/w1", 2, 11.5, 12.0, pid=2)]}
    assert overlaps(late, faults, TIMING) == ([], 1)
    hasty = {"j": [run("j", "n1/w1", 1, 9.5, 16.1), run("j", "n2/w1", 2, 10.3, 10.8, pid=2)]}
    assert len(overlaps(hasty, faults, TIMING)[0]) == 1
    # A blackout of another node excuses nothing.
    other = Faults()
    other.blackout("sigstop", 10.0, 16.0, ["n3"])
    assert len(overlaps(late, other, TIMING)[0]) == 1


def test_a_killed_run_ends_at_the_kill():
    faults = Faults()
    faults.kills[1] = 10.5
    runs = {"j": [run("j", "n1/w1", 1, 10.0, None), run("j", "n2/w1", 2, 12.0, 12.5, pid=2)]}
    assert overlaps(runs, faults, TIMING) == ([], 0)
    faults.kills[1] = 13.0
    assert len(overlaps(runs, faults, TIMING)[0]) == 1


def test_regressions_catch_going_back_and_running_after_completion():
    samples = {"a": [Sample(1.0, "mongodb", "completed", 4), Sample(2.0, "mongodb", "running", 3)],
               "b": [Sample(1.0, "redis", "completed", 4)],
               "c": [Sample(1.0, "mongodb", "pending", 0), Sample(2.0, "mongodb", "completed", 3)]}
    runs = {"b": [run("b", "n1/w1", 2, 1.5, 2.0)], "c": [run("c", "n1/w1", 1, 1.2, 1.8)]}
    found = regressions(samples, runs)
    assert {f["job"] for f in found} == {"a", "b"}


def test_disagreements_and_outcomes_at_the_end():
    end = EndState(
        mongo={"done": {"status": "completed"}, "stuck": {"status": "pending"}, "differs": {"status": "running"},
               "queued": {"status": "completed"}},
        redis={"differs": {"status": "completed"}, "orphan": {"status": "pending"}},
        queued={"ready": {"queued"}, "delayed": set(), "leases": set()},
    )
    assert {d["job"] for d in disagreements(end)} == {"stuck", "differs", "orphan", "queued"}
    report = check({"done": "completed", "stuck": "completed", "gone": "failed"}, {}, {}, end, Faults(), TIMING)
    assert not report.ok
    assert {f["job"] for f in report.violations["outcomes"]} == {"stuck", "gone"}
    summary = report.summary()
    assert summary["violations"]["outcomes"]["count"] == 2 and summary["acknowledged"] == 3


async def test_the_recording_processor_writes_start_and_end_lines_the_checker_reads(tmp_path):
    processor = HistoryProcessor()
    job = Job.new(JobSpec(type="history", payload=payload(tmp_path, 1)))
    job.attempts, job.node_id, job.worker_id = 1, "n1", "n1/w1"
    assert await processor.process(job) == {"ran_on": "n1/w1"}
    await processor.close()
    [recorded] = read_runs(tmp_path)[job.id]
    assert (recorded.worker, recorded.attempt, recorded.outcome) == ("n1/w1", 1, "completed")
    assert recorded.end >= recorded.start


def test_a_line_still_being_written_is_left_for_the_next_read(tmp_path):
    start = b'{"event":"start","job":"j1","pid":7,"worker":"n1/w1","node":"n1","attempt":1,"t":1.0}\n'
    end = b'{"event":"end","job":"j1","pid":7,"worker":"n1/w1","node":"n1","attempt":1,"t":2.0,"outcome":"completed"}\n'
    record = tmp_path / "7.jsonl"
    record.write_bytes(start + end[:30])
    [(job, [seen])] = read_runs(tmp_path).items()
    assert (job, seen.end) == ("j1", None)
    record.write_bytes(start + end)
    assert read_runs(tmp_path)["j1"][0].outcome == "completed"


def test_a_run_taken_before_a_pause_that_starts_on_waking_is_excused_once_its_lease_ran_out():
    # n1 took attempt 1, was paused before its processor wrote a line; n2 ran attempt 2 and
    # completed it; n1 woke and began attempt 1 while (or after) attempt 2 ran.
    faults = Faults()
    faults.blackout("sigstop", 10.0, 15.0, ["n1"])
    stale = run("j", "n1/w1", 1, 15.1, 15.3)
    taken_over = run("j", "n2/w1", 2, 11.5, 15.2, pid=2)
    assert overlaps({"j": [taken_over, stale]}, faults, TIMING) == ([], 1)
    samples = {"j": [Sample(15.05, "mongodb", "completed", 5)]}
    assert regressions(samples, {"j": [taken_over, stale]}, faults) == []
    assert regressions(samples, {"j": [taken_over, stale]}, Faults()) != []
