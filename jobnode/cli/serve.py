"""`jobnode serve`: run one node, configured from the environment.

Everything this module loads is part of a production node: it never imports the development
tooling of `jobnode.dev`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobnode.cli.usage import unavailable


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run one node, configured from the environment")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    # Imported here so the client commands work whatever state the server modules are in.
    try:
        from jobnode.core.settings import ConfigError, Settings
    except ModuleNotFoundError as exc:
        raise unavailable("serve", exc) from None

    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"jobnode: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        from jobnode.observability.logs import configure_logging
        from jobnode.node import run_node
    except ModuleNotFoundError as exc:
        raise unavailable("serve", exc) from None

    configure_logging(settings)
    run_node(settings)
    return 0
