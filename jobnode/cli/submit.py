"""`jobnode submit`: one job, or `--count` copies of it in batches, optionally waiting for them."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from jobnode.cli.arguments import positive_float, positive_int
from jobnode.cli.connection import client_command
from jobnode.cli.events import watch_job
from jobnode.cli.output import Progress, format_job
from jobnode.cli.usage import UsageError
from jobnode.client import ApiError, AsyncClient

BATCH_CHUNK = 500  # jobs per batch request: well under the server's default MAX_BATCH_SIZE of 1000
# A node makes a batch durable in one group commit, so a few batches in flight keep it busy; more only
# wait in its queue and make each request slower. Single submits are cheap, so more of them overlap.
BATCHES_IN_FLIGHT = 2
SINGLE_SUBMITS_IN_FLIGHT = 8
# A batch of 500 journaled jobs can take seconds on a busy node: wait longer than for other calls.
SUBMIT_TIMEOUT_S = 60.0


def add_submit_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    submit = commands.add_parser("submit", parents=[common], help="submit one job or many")
    submit.add_argument("type", help="job type, e.g. echo")
    payload = submit.add_mutually_exclusive_group()
    payload.add_argument("--payload", help="payload as a JSON object")
    payload.add_argument("--payload-file", help="file holding the JSON payload (- for stdin)")
    submit.add_argument("--priority", help="0-10 or low/normal/high")
    submit.add_argument("--queue", help="the queue to wait in (default: the one its type declares)")
    submit.add_argument("--max-retries", type=int, metavar="N",
                        help="retries after a failed attempt (default: the node's MAX_RETRIES)")
    submit.add_argument("--timeout", type=positive_float, metavar="SECONDS", help="per-attempt timeout")
    submit.add_argument("--at", metavar="ISO", help="run no earlier than this ISO-8601 time")
    submit.add_argument(
        "--key", help="idempotency key; with --count the prefix of one key per job (KEY-0, KEY-1, ...), made up"
        " when not given, so a timed-out batch is resent without duplicates and a rerun with the same --key"
        " adds only the missing jobs",
    )
    submit.add_argument("--count", type=positive_int, help="submit N identical jobs")
    submit.add_argument(
        "--concurrency", type=positive_int, help=f"requests in flight ({BATCHES_IN_FLIGHT} batches, or"
        f" {SINGLE_SUBMITS_IN_FLIGHT} with --no-batch)",
    )
    submit.add_argument("--no-batch", action="store_true", help="with --count: one request per job")
    submit.add_argument("--wait", action="store_true", help="wait until the jobs finish")
    submit.add_argument("--wait-timeout", type=positive_float, default=300.0, metavar="SECONDS",
                        help="with --wait: give up (exit 1) after this long (default: 300)")
    submit.set_defaults(handler=client_command(run_submit, timeout_s=SUBMIT_TIMEOUT_S))


def _job_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The submit fields the command line gives (everything but the idempotency key)."""
    priority: Any = args.priority
    if priority is not None and priority.lstrip("-").isdigit():
        priority = int(priority)
    return {
        "type": args.type,
        "payload": _read_payload(args),
        "priority": priority,
        "max_retries": args.max_retries,
        "timeout_seconds": args.timeout,
        "scheduled_at": args.at,
        "queue": args.queue,
    }


def _read_payload(args: argparse.Namespace) -> dict | None:
    if args.payload is not None:
        text, source = args.payload, "--payload"
    elif args.payload_file is not None:
        source = f"--payload-file {args.payload_file}"
        try:
            text = sys.stdin.read() if args.payload_file == "-" else Path(args.payload_file).read_text()
        except OSError as exc:
            raise UsageError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    else:
        return None
    try:
        payload = json.loads(text)
    except ValueError as exc:
        raise UsageError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UsageError(f"{source} must be a JSON object, like '{{\"n\": 1}}'")
    return payload


async def run_submit(client: AsyncClient, args: argparse.Namespace) -> int:
    spec = _job_spec(args)
    if args.count is None:
        job = await client.submit(**spec, idempotency_key=args.key)
        if args.wait:
            job = await watch_job(client, job["id"], timeout_s=args.wait_timeout)
        if args.json:
            print(json.dumps(job))
        elif args.wait:
            print(format_job(job))
        else:
            print(f"{job['id']}: {job['status']}")
        return 0 if not args.wait or job["status"] == "completed" else 1
    args.key = args.key or f"cli-{uuid.uuid4().hex[:12]}"
    if args.concurrency is None:
        args.concurrency = SINGLE_SUBMITS_IN_FLIGHT if args.no_batch else BATCHES_IN_FLIGHT
    started = time.monotonic()
    ids = await _submit_many(client, spec, args)
    elapsed_s = time.monotonic() - started
    summary: dict[str, Any] = {"submitted": len(ids), "key": args.key, "elapsed_s": round(elapsed_s, 3)}
    summary["jobs_per_s"] = round(len(ids) / max(elapsed_s, 1e-9), 1)
    if not args.json:
        print(f"submitted {len(ids)} jobs in {elapsed_s:.2f}s ({summary['jobs_per_s']:.1f} jobs/s)")
    if not args.wait:
        if args.json:
            print(json.dumps(summary | {"ids": ids}))
        return 0
    return await _wait_and_report(client, ids, started, summary, args)


async def _submit_many(client: AsyncClient, spec: dict, args: argparse.Namespace) -> list[str]:
    """Submit `--count` copies of the job, batched or one by one, `--concurrency` requests at a time.

    Every job carries the key `{args.key}-{index}`: the client resends a keyed request after a timeout
    or a 503, and the node answers a known key with the job it already has instead of a new one."""
    count, size = args.count, (1 if args.no_batch else BATCH_CHUNK)
    ids: list[str] = [""] * count
    progress = Progress("submitting", count)
    submitted = 0

    def keyed(index: int) -> dict:
        return spec | {"idempotency_key": f"{args.key}-{index}"}

    async def send(start: int) -> None:
        nonlocal submitted
        indexes = range(start, min(start + size, count))
        if args.no_batch:
            jobs = [await client.submit(**keyed(start))]
        else:
            jobs = await client.submit_batch([keyed(i) for i in indexes])
        for index, job in zip(indexes, jobs):
            ids[index] = job["id"]
        submitted += len(jobs)
        progress.update(submitted)

    try:
        await _run_pool(range(0, count, size), args.concurrency, send)
    except ApiError:
        progress.finish()
        print(f"submitted {submitted} of {count} jobs before the error; to add the rest without duplicates,"
              f" run the same command with --key {args.key}", file=sys.stderr)
        raise
    progress.finish()
    return ids


async def _run_pool(items: Iterable[Any], concurrency: int, work: Callable[[Any], Awaitable[None]]) -> None:
    """Run `work` on every item, at most `concurrency` at once; the first error stops the rest."""
    shared = iter(items)

    async def worker() -> None:
        for item in shared:  # one iterator for all workers: each item is taken exactly once
            await work(item)

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _wait_and_report(
    client: AsyncClient, ids: list[str], started: float, summary: dict, args: argparse.Namespace
) -> int:
    progress = Progress("finishing", len(ids))
    try:
        jobs = await client.wait_many(
            ids,
            timeout_s=args.wait_timeout,
            concurrency=max(16, args.concurrency),
            on_progress=lambda done, _total: progress.update(done),
        )
    finally:
        progress.finish()
    elapsed_s = time.monotonic() - started
    counts = {status: 0 for status in ("completed", "failed", "cancelled")}
    for job in jobs:
        counts[job["status"]] += 1
    rate = len(jobs) / max(elapsed_s, 1e-9)
    if args.json:
        summary |= {"finished_s": round(elapsed_s, 3), "finished_per_s": round(rate, 1), **counts, "ids": ids}
        print(json.dumps(summary))
    else:
        print(
            f"finished {len(jobs)} jobs in {elapsed_s:.2f}s from the first submit ({rate:.1f} jobs/s): "
            + ", ".join(f"{status} {n}" for status, n in counts.items())
        )
    return 0 if counts["completed"] == len(jobs) else 1
