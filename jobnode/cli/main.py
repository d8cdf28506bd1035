"""The `jobnode` command: run a node (`serve`, `dev`) and talk to one (`submit`, `jobs`, `status`, `login`).

This module builds the parser from each command group's module and turns what a command
raises into an exit code: 0 ok, 1 a request (or a waited-for job) failed, 2 usage or
configuration error, 130 interrupted, 141 output closed early (as by `| head`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from jobnode import __version__
from jobnode.cli.certs import add_cert_parser
from jobnode.cli.connection import add_client_options, report_api_error
from jobnode.cli.dev import add_dev_parser
from jobnode.cli.events import add_events_parser
from jobnode.cli.health import add_health_parser
from jobnode.cli.jobs import add_jobs_parser
from jobnode.cli.schedules import add_schedules_parser
from jobnode.cli.serve import add_serve_parser
from jobnode.cli.session import add_login_parser
from jobnode.cli.status import add_status_parser
from jobnode.cli.submit import add_submit_parser
from jobnode.cli.types import add_types_parser
from jobnode.cli.usage import UsageError
from jobnode.cli.users import add_user_parser
from jobnode.client import ApiError, WaitTimeout


# What a shell reports for a program killed by SIGPIPE: a reader that stopped reading, not a failure of ours.
BROKEN_PIPE_EXIT = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `jobnode` command and return its exit code."""
    try:
        code = _run(argv)
        sys.stdout.flush()  # inside the try: the last buffered output may be what meets the closed pipe
        return code
    except BrokenPipeError:
        # Python would report the failed flush at exit again: point stdout at nothing instead.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return BROKEN_PIPE_EXIT


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        # Only `dev` takes arguments of its own, which its own parser reads later.
        if extra and args.command != "dev":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    args.extra = extra
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"jobnode: {exc}", file=sys.stderr)
        return 2
    except ApiError as exc:
        report_api_error(exc, args)
        return 1
    except WaitTimeout as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0 if getattr(args, "watch", None) else 130  # Ctrl-C is how a watch ends


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobnode", description="Run and use a jobnode cluster.")
    parser.add_argument("--version", action="version", version=f"jobnode {__version__}")
    add_client_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Client options are accepted after the command too; SUPPRESS keeps them from
    # overwriting values given before it.
    common = argparse.ArgumentParser(add_help=False)
    add_client_options(common, defaults=False)

    add_serve_parser(commands)
    add_health_parser(commands)
    add_dev_parser(commands)
    add_submit_parser(commands, common)
    add_jobs_parser(commands, common)
    add_schedules_parser(commands, common)
    add_events_parser(commands, common)
    add_status_parser(commands, common)
    add_types_parser(commands, common)
    add_login_parser(commands, common)
    add_user_parser(commands)
    add_cert_parser(commands)
    return parser
