"""`jobnode dev`: a local cluster with embedded Redis and MongoDB.

The development tooling is imported only when this command runs, and the command's own
arguments are parsed by the parser `jobnode.dev.cluster` builds.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobnode.cli.usage import unavailable


def add_dev_parser(commands: Any) -> None:
    # add_help=False: `jobnode dev --help` goes to dev's own parser, built only when needed.
    dev = commands.add_parser("dev", help="run a local cluster with embedded Redis and MongoDB", add_help=False)
    dev.set_defaults(handler=run_dev)


def run_dev(args: argparse.Namespace) -> int:
    try:
        import jobnode.dev.cluster as dev
    except ModuleNotFoundError as exc:
        raise unavailable("dev", exc) from None

    parser = argparse.ArgumentParser(prog="jobnode dev", description="Run a local cluster for development.")
    dev.add_arguments(parser)
    try:
        dev_args = parser.parse_args(args.extra)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return dev.run(dev_args) or 0
