"""`jobnode events` (tail the cluster's events) and `jobnode jobs watch ID` (one job, with a
progress bar fed by its events); `submit --wait` shows a single job's progress the same way."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TextIO

from jobnode.cli.connection import client_command
from jobnode.cli.output import print_json
from jobnode.client import TERMINAL_STATUSES, AsyncClient

# What each event line shows after its name, by the event's data fields.
DETAIL_FIELDS = ("attempt", "node", "worker", "fraction", "message", "error", "retry_at_ms", "duration_ms",
                 "previous", "token", "workers", "reason")


def add_events_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    events = commands.add_parser(
        "events", parents=[common], help="tail the cluster's events (job, node and leader changes)",
        description="Print the cluster's events as they happen, until Ctrl-C. Filters are prefixes; "
                    "give several comma-separated.")
    events.add_argument("--type", help="job type prefix(es)")
    events.add_argument("--queue", help="queue prefix(es)")
    events.add_argument("--job", help="job id prefix(es)")
    events.add_argument("--event", help="event name prefix(es), e.g. job.completed,job.dead or node.")
    events.add_argument("--last-event-id", help="replay the events after this id first")
    events.set_defaults(handler=client_command(run_events), watch=True)


def add_watch_parser(actions: Any, common: argparse.ArgumentParser) -> None:
    watch = actions.add_parser("watch", parents=[common], help="follow one job to its end, with its progress")
    watch.add_argument("id")
    watch.set_defaults(handler=client_command(run_watch))


async def run_events(client: AsyncClient, args: argparse.Namespace) -> int:
    async for event in client.events(type=args.type, queue=args.queue, job=args.job, event=args.event,
                                     last_event_id=args.last_event_id):
        if args.json:
            print(json.dumps(event), flush=True)
        else:
            print(event_line(event), flush=True)
    return 0


def event_line(event: dict) -> str:
    data = event.get("data") or {}
    subject = data.get("job") or data.get("node") or ""
    details = " ".join(f"{name}={_shown(data[name])}" for name in DETAIL_FIELDS if name in data)
    return " ".join(part for part in (data.get("at", ""), event["event"], subject, details) if part)


def _shown(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if " " in text or not text else text


async def run_watch(client: AsyncClient, args: argparse.Namespace) -> int:
    job = await watch_job(client, args.id)
    print_json(job, args)
    return 0 if job["status"] == "completed" else 1


async def watch_job(client: AsyncClient, job_id: str, *, timeout_s: float = 24 * 3600,
                    stream: TextIO | None = None) -> dict:
    """Wait for a job, drawing its progress on stderr; returns the finished job."""
    view = JobProgressView(job_id, stream or sys.stderr)
    job = await client.wait(job_id, timeout_s=timeout_s, on_event=view.show)
    view.finish(job)
    return job


class JobProgressView:
    """A job's progress on a stream: a redrawn bar on a terminal, one line per event otherwise."""

    BAR_WIDTH = 30

    def __init__(self, job_id: str, stream: TextIO) -> None:
        self.job_id, self.stream = job_id, stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.fraction = 0.0
        self.message = ""

    def show(self, event: dict) -> None:
        data = event.get("data") or {}
        if event["event"] == "job.progress":
            self.fraction, self.message = float(data.get("fraction", 0.0)), data.get("message") or ""
            if self.tty:  # redraw the bar in place
                self.stream.write("\r" + self._bar() + "\033[K")
                self.stream.flush()
                return
        elif self.tty:
            self.stream.write("\r\033[K")  # the line replaces the bar
        self.stream.write(f"{self._elapsed()} {event_line(event)}\n")
        self.stream.flush()

    def finish(self, job: dict) -> None:
        if job.get("status") in TERMINAL_STATUSES and self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _bar(self) -> str:
        filled = int(self.BAR_WIDTH * self.fraction)
        bar = "#" * filled + "." * (self.BAR_WIDTH - filled)
        return f"{self.job_id[:12]} [{bar}] {self.fraction * 100:3.0f}% {self.message}"

    def _elapsed(self) -> str:
        return f"+{time.monotonic() - self.started:6.1f}s"
