"""`jobnode serve`: run one node, configured from the environment.

Everything this module loads is part of a production node: it never imports the development
tooling of `jobnode.dev`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from jobnode.cli.usage import unavailable


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser("serve", help="run one node, configured from the environment")
    add_import_option(serve)
    serve.set_defaults(handler=run_serve)


def add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE at start so the processors it registers are served "
                             "(repeatable; added to JOBNODE_IMPORTS)")


def run_serve(args: argparse.Namespace) -> int:
    # Imported here so the client commands work whatever state the server modules are in.
    try:
        from jobnode.core.settings import ConfigError, Settings
    except ModuleNotFoundError as exc:
        raise unavailable("serve", exc) from None

    try:
        settings = Settings.from_env()
        if args.imports:
            settings = dataclasses.replace(settings, imports=(*settings.imports, *args.imports))
    except ConfigError as exc:
        print(f"jobnode: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        from jobnode.observability.logs import configure_logging
        from jobnode.node import run_node
        from jobnode.processors.imports import ImportFailed, import_modules
    except ModuleNotFoundError as exc:
        raise unavailable("serve", exc) from None

    configure_logging(settings)
    try:
        import_modules(settings.imports)
    except ImportFailed as exc:
        print(f"jobnode: {exc}", file=sys.stderr)
        return 2
    run_node(settings)
    return 0
