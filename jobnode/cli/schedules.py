"""`jobnode schedules`: list schedules, add one, pause, resume or delete one."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobnode.cli.connection import client_command
from jobnode.cli.output import format_table
from jobnode.cli.usage import UsageError
from jobnode.client import AsyncClient

COLUMNS = ("name", "when", "timezone", "type", "paused", "next_fire_at", "last_fire_at")


def add_schedules_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    schedules = commands.add_parser("schedules", parents=[common], help="list, add, pause, resume or delete schedules")
    schedules.set_defaults(handler=client_command(run_list))
    actions = schedules.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", parents=[common], help="list schedules (the default)").set_defaults(
        handler=client_command(run_list))
    add = actions.add_parser("add", parents=[common], help="create a schedule (admin)")
    add.add_argument("name")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="5 fields, or 6 with seconds first, e.g. '0 9 * * 1-5'")
    when.add_argument("--every", type=int, metavar="SECONDS", help="fire every SECONDS seconds")
    add.add_argument("--timezone", default="UTC", help="IANA time zone the cron expression is read in (UTC)")
    add.add_argument("--type", required=True, help="the job type each fire submits")
    add.add_argument("--payload", default="{}", help="the jobs' payload as JSON ({})")
    add.add_argument("--queue", help="the jobs' queue (the type's own queue when not given)")
    add.add_argument("--priority", type=int)
    add.add_argument("--overlap", choices=("skip", "queue", "allow"), default="skip",
                     help="when the last run is still going: skip the fire, queue it, or allow both (skip)")
    add.add_argument("--catch-up", choices=("none", "one", "all"), default="one",
                     help="fire times missed while no leader fired: none, the latest one, or all (one)")
    add.add_argument("--catch-up-window", type=int, metavar="SECONDS", help="how far back catch-up reaches (3600)")
    add.add_argument("--jitter", type=float, metavar="SECONDS", help="delay each run by up to this much")
    add.add_argument("--paused", action="store_true", help="create it paused")
    add.set_defaults(handler=client_command(run_add))
    for name, help_text in (("get", "show one schedule"), ("pause", "stop firing it (admin)"),
                            ("resume", "fire it again from now on (admin)"), ("delete", "delete it (admin)")):
        action = actions.add_parser(name, parents=[common], help=help_text)
        action.add_argument("name")
        action.set_defaults(handler=client_command(run_action))


async def run_list(client: AsyncClient, args: argparse.Namespace) -> int:
    schedules = await client.schedules()
    if args.json:
        print(json.dumps({"schedules": schedules}))
        return 0
    rows = [[s["name"], s["cron"] or f"every {s['every_seconds']}s", s["timezone"], s["job"].get("type"),
             s["paused"], s["next_fire_at"], s["last_fire_at"]] for s in schedules]
    print(format_table(COLUMNS, rows))
    return 0


async def run_add(client: AsyncClient, args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError:
        raise UsageError("--payload must be JSON, e.g. '{\"n\": 1}'") from None
    job: dict[str, Any] = {"type": args.type, "payload": payload}
    if args.queue:
        job["queue"] = args.queue
    if args.priority is not None:
        job["priority"] = args.priority
    body: dict[str, Any] = {"name": args.name, "timezone": args.timezone, "job": job, "overlap": args.overlap,
                            "catch_up": args.catch_up, "paused": args.paused}
    body["cron" if args.cron else "every_seconds"] = args.cron or args.every
    if args.catch_up_window is not None:
        body["catch_up_window_seconds"] = args.catch_up_window
    if args.jitter is not None:
        body["jitter_seconds"] = args.jitter
    created = await client.create_schedule(body)
    print(json.dumps(created) if args.json else f"created {created['name']}: next fire {created['next_fire_at']}")
    return 0


async def run_action(client: AsyncClient, args: argparse.Namespace) -> int:
    if args.action == "delete":
        await client.delete_schedule(args.name)
        print(json.dumps({"name": args.name, "deleted": True}) if args.json else f"deleted {args.name}")
        return 0
    if args.action == "get":
        answer = await client.schedule(args.name)
    else:
        answer = await client.set_schedule_paused(args.name, args.action == "pause")
    if args.json or args.action == "get":
        print(json.dumps(answer, indent=None if args.json else 2))
    else:
        print(f"{answer['name']}: {'paused' if answer['paused'] else 'next fire ' + str(answer['next_fire_at'])}")
    return 0
