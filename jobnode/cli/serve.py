"""`jobnode serve`: run one node, configured from the environment.

Everything this module loads is part of a production node: it never imports the development
tooling of `jobnode.dev`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from typing import Any

from jobnode.cli.usage import unavailable


def add_serve_parser(commands: Any) -> None:
    serve = commands.add_parser(
        "serve", help="run one node, configured from the environment",
        description="Run one node. Every setting comes from an environment variable, or from a .env"
        " file in the working directory (the environment wins); --import adds processor modules.",
        epilog=_variables_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_import_option(serve)
    serve.set_defaults(handler=run_serve)


def add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                        help="import MODULE at start so the processors it registers are served "
                             "(repeatable; added to JOBNODE_IMPORTS)")


def _variables_epilog() -> str:
    try:
        from jobnode.core.settings import VARIABLES
    except ModuleNotFoundError:
        names = "(the settings module cannot be loaded here)"
    else:
        names = textwrap.fill(", ".join(v.name for v in VARIABLES), width=88,
                              initial_indent="  ", subsequent_indent="  ")
    return (
        "environment variables (each one's meaning, default and allowed values are in\n"
        "docs/configuration.md; .env.example lists them all with their defaults):\n" + names
    )


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
