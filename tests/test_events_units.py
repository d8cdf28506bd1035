"""The event stream's pure parts: resume and gap decisions, filters, progress throttling,
the SSE parser of the client, and log line cutting."""

from __future__ import annotations

import pytest

from jobnode.client import SseParser
from jobnode.core.errors import ValidationError
from jobnode.core.job import Job, JobSpec
from jobnode.events.event import decode_event
from jobnode.events.filters import Visibility, parse_filter
from jobnode.events.resume import ResumePoint, parse_id, resume_point
from jobnode.pipeline.progress import Progress, ProgressThrottle
from jobnode.storage.redis.event_stream import StreamBounds
from jobnode.storage.redis.job_logs import LOG_LINE_MAX_BYTES, cut_line


@pytest.mark.parametrize(("last", "bounds", "expected"), [
    # Still held: replay from right after it.
    ("100-3", StreamBounds("90-0", "200-0"), ResumePoint("100-3", gap=False)),
    ("90-0", StreamBounds("90-0", "200-0"), ResumePoint("90-0", gap=False)),
    # Older than the oldest held: a gap, then everything held.
    ("80-5", StreamBounds("90-0", "200-0"), ResumePoint(f"89-{2**64 - 1}", gap=True)),
    ("80-5", StreamBounds("90-4", "200-0"), ResumePoint("90-3", gap=True)),
    # Empty stream: a gap only if something was written after the client's last id.
    ("200-0", StreamBounds(None, "200-0"), ResumePoint("200-0", gap=False)),
    ("150-0", StreamBounds(None, "200-0"), ResumePoint("200-0", gap=True)),
])
def test_resume_point(last, bounds, expected):
    assert resume_point(last, bounds) == expected


@pytest.mark.parametrize("bad", ["", "abc", "12-x", "-1", "1-2-3", "9" * 41])
def test_a_bad_last_event_id_is_refused_by_name(bad):
    with pytest.raises(ValidationError) as caught:
        parse_id(bad)
    assert caught.value.field == "Last-Event-ID"


def job_event(name="job.completed", job="abc123", type_="sleep", sub=""):
    return decode_event("1700000000000-0", {"event": name, "job": job, "type": type_, "queue": "", "sub": sub,
                                            "attempt": "2"})


def test_an_entry_decodes_into_typed_data_without_its_labels():
    event = job_event(sub="alice")
    assert event.data == {"job": "abc123", "type": "sleep", "queue": "default", "attempt": 2,
                          "at": "2023-11-14T22:13:20.000Z"}
    assert event.owner == "alice" and event.terminal
    assert event.frame.startswith(b"id: 1700000000000-0\nevent: job.completed\ndata: {")


def test_filters_are_prefixes_anded_across_names_and_ored_within():
    f = parse_filter({"type": ["sl,ec"], "event": ["job.comp", "job.dead"]})
    assert f.matches(job_event())
    assert f.matches(job_event(name="job.dead", type_="echo"))
    assert not f.matches(job_event(name="job.started"))
    assert not f.matches(job_event(type_="http"))
    node = decode_event("1-0", {"event": "node.joined", "node": "n1"})
    assert not f.matches(node)  # a job filter passes job events only
    assert parse_filter({}).matches(node)
    with pytest.raises(ValidationError) as caught:
        parse_filter({"job": ["x" * 200]})
    assert caught.value.field == "job"


def test_visibility_by_role():
    alice_only, no_jobs = Visibility(owner="alice"), Visibility(jobs=False)
    node = decode_event("1-0", {"event": "node.down", "node": "n1"})
    assert alice_only.allows(job_event(sub="alice")) and not alice_only.allows(job_event(sub="bob"))
    assert not no_jobs.allows(job_event(sub="alice")) and no_jobs.allows(node) and alice_only.allows(node)


def test_progress_throttle_sends_at_once_then_the_last_of_each_interval():
    throttle = ProgressThrottle(interval_s=1.0)
    throttle.offer(Progress(0.1))
    assert throttle.take(now_s=10.0) == Progress(0.1)
    throttle.offer(Progress(0.2))
    throttle.offer(Progress(0.3, "last wins"))
    assert throttle.due_at_s() == 11.0
    assert throttle.take(now_s=10.5) is None
    assert throttle.take(now_s=11.0) == Progress(0.3, "last wins")
    assert throttle.take(now_s=20.0) is None and throttle.due_at_s() is None


async def test_progress_checks_its_arguments_even_without_a_reporter():
    job = Job.new(JobSpec(type="sleep"))
    await job.progress(0.5, "fine")
    for bad in (-0.1, 1.5, float("nan"), "half", True):
        with pytest.raises(ValueError):
            await job.progress(bad)
    with pytest.raises(ValueError):
        await job.progress(0.5, message=3)  # type: ignore[arg-type]
    assert "_reporter" not in job.to_document() and "progress" in job.to_json()


def test_the_sse_parser_reads_frames_and_skips_comments():
    parser = SseParser()
    lines = ["retry: 2000\n", "\n", ": heartbeat\n", "\n", "id: 5-0\n", "event: job.started\n",
             'data: {"job": "a"}\n', "\n", "event: stream.gap\n", 'data: {"reason": "retention"}\n', "\n"]
    events = [e for e in map(parser.feed, lines) if e]
    assert events == [{"id": "5-0", "event": "job.started", "data": {"job": "a"}},
                      {"id": None, "event": "stream.gap", "data": {"reason": "retention"}}]


def test_log_lines_are_cut_to_their_byte_limit_on_a_character_boundary():
    assert cut_line("short") == "short"
    cut = cut_line("é" * 2000)
    assert len(cut.encode()) <= LOG_LINE_MAX_BYTES and cut.endswith("[cut]")
