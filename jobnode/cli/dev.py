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

    if args.extra[:1] == ["add-node"]:
        import jobnode.dev.add_node as add_node

        parser = argparse.ArgumentParser(prog="jobnode dev add-node",
                                         description="Add a node to a running `jobnode dev` cluster (it joins "
                                                     "through SEEDS, with what cluster.json holds).")
        add_node.add_arguments(parser)
        try:
            node_args = parser.parse_args(args.extra[1:])
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 2
        return add_node.run(node_args)
    parser = argparse.ArgumentParser(prog="jobnode dev", description="Run a local cluster for development "
                                     "(`jobnode dev add-node --help`: add a node to a running one).")
    dev.add_arguments(parser)
    try:
        dev_args = parser.parse_args(args.extra)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    return dev.run(dev_args) or 0
