"""`jobnode jobs`: list jobs, or get, watch, cancel, retry or delete one, or show its logs."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobnode.cli.arguments import positive_int
from jobnode.cli.connection import client_command
from jobnode.cli.events import add_watch_parser
from jobnode.cli.output import format_job, format_table
from jobnode.cli.usage import UsageError
from jobnode.client import AsyncClient
from jobnode.core.job import STATUSES

JOB_COLUMNS = ("id", "type", "status", "priority", "attempts", "created_at")


def add_jobs_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    jobs = commands.add_parser("jobs", parents=[common], help="list jobs, or act on one")
    _add_list_options(jobs)
    jobs.set_defaults(handler=client_command(run_jobs_list))
    actions = jobs.add_subparsers(dest="action", metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="list jobs (the default)")
    _add_list_options(listing)
    for name, help_text in (
        ("get", "show one job"),
        ("cancel", "cancel a job that has not finished"),
        ("retry", "re-run a failed job (admin)"),
        ("delete", "delete a job's record (admin)"),
    ):
        action = actions.add_parser(name, parents=[common], help=help_text)
        action.add_argument("id")
        action.set_defaults(handler=client_command(run_job_action))
    add_watch_parser(actions, common)
    logs = actions.add_parser("logs", parents=[common], help="show a job's last log lines")
    logs.add_argument("id")
    logs.set_defaults(handler=client_command(run_job_logs))

def _add_list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", default=argparse.SUPPRESS, choices=STATUSES, metavar="STATUS",
                        help=f"only jobs in this status: {', '.join(STATUSES)}")
    parser.add_argument("--type", default=argparse.SUPPRESS, help="only jobs of this type, e.g. echo")
    parser.add_argument("--limit", type=positive_int, default=argparse.SUPPRESS, help="page size (server: 50)")
    parser.add_argument("--cursor", default=argparse.SUPPRESS, help="continue a previous listing")
    parser.add_argument("--all", action="store_true", default=argparse.SUPPRESS, help="follow every page to the end")


async def run_jobs_list(client: AsyncClient, args: argparse.Namespace) -> int:
    filters = {"status": getattr(args, "status", None), "type": getattr(args, "type", None),
               "limit": getattr(args, "limit", None)}
    if getattr(args, "all", False):
        if getattr(args, "cursor", None):
            raise UsageError("--all starts from the newest job; it does not take --cursor")
        jobs = [job async for job in client.iter_jobs(**filters)]
        page = {"jobs": jobs, "count": len(jobs), "next_cursor": None}
    else:
        page = await client.list(**filters, cursor=getattr(args, "cursor", None))
    if args.json:
        print(json.dumps(page))
        return 0
    rows = [[job.get(column) for column in JOB_COLUMNS] for job in page["jobs"]]
    print(format_table(JOB_COLUMNS, rows))
    if page.get("next_cursor"):
        print(f"more jobs: add --cursor {page['next_cursor']} (or --all)", file=sys.stderr)
    return 0


async def run_job_logs(client: AsyncClient, args: argparse.Namespace) -> int:
    answer = await client.logs(args.id)
    if args.json:
        print(json.dumps(answer))
        return 0
    for line in answer["lines"]:
        print(f"{line['at']} [attempt {line['attempt']}] {line['message']}")
    return 0


async def run_job_action(client: AsyncClient, args: argparse.Namespace) -> int:
    action = {"get": client.get, "cancel": client.cancel, "retry": client.retry, "delete": client.delete}
    answer = await action[args.action](args.id)
    if args.json:
        print(json.dumps(answer))
    elif args.action == "get":
        print(format_job(answer))
    elif args.action == "delete":
        print(f"deleted {args.id}")
    else:
        print(f"{args.id}: {answer.get('status')}")
    return 0
