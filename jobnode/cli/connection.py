"""How a command reaches a node: the client options, the client built from them, and what a
failed request prints.

The CLI reads a few JOBNODE_* variables itself: they configure this client, not a node, so they
are not part of jobnode.core.settings.Settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jobnode.cli.tokens import ENV_TOKEN_FILE, chosen_token_file, load_token
from jobnode.cli.usage import UsageError
from jobnode.client import ApiError, AsyncClient, AuthError, ConnectionFailed, TlsFailed

DEFAULT_URL = "http://127.0.0.1:8080"
ENV_URL, ENV_TOKEN, ENV_CA_FILE = "JOBNODE_URL", "JOBNODE_TOKEN", "JOBNODE_CA_FILE"


def add_client_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--url, --token and friends; without `defaults` an option left out does not overwrite one
    given earlier on the command line (before the command name)."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parser.add_argument("--url", default=default(None),
                        help=f"node URL, or several separated by commas to fail over between (env JOBNODE_URL, else {DEFAULT_URL})")
    parser.add_argument("--token", default=default(None), help="bearer token (env JOBNODE_TOKEN, else `login`)")
    parser.add_argument("--token-file", type=Path, default=default(None),
                        help=f"where `login` keeps tokens (env {ENV_TOKEN_FILE}, else ~/.config/jobnode/token.json)")
    parser.add_argument("--ca-file", default=default(None), help="CA bundle for https (env JOBNODE_CA_FILE)")
    parser.add_argument("--insecure", action="store_true", default=default(False), help="skip TLS verification")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")


def client_command(
    command: Callable[[AsyncClient, argparse.Namespace], Awaitable[int]],
    *,
    several_urls: bool = False,
    **client_options: Any,
) -> Callable[..., int]:
    """Wrap an async command so it runs with a client built from the global options.

    --url may list nodes separated by commas (args.urls holds them all). The client given to the
    command fails over between them (jobnode.client says which requests may move), except with
    `several_urls`, where the command asks each node itself and its client talks to the first.
    `client_options` go to AsyncClient."""

    def run(args: argparse.Namespace) -> int:
        args.urls = _split_urls(args.url or os.environ.get(ENV_URL) or DEFAULT_URL)
        args.url = args.urls[0]
        args.client_options = client_options
        client = client_for(args.url if several_urls else args.urls, args, **client_options)

        async def go() -> int:
            async with client:
                return await command(client, args)

        return asyncio.run(go())

    return run


def _split_urls(text: str) -> list[str]:
    urls = [url.strip().rstrip("/") for url in text.split(",") if url.strip()]
    if not urls:
        raise UsageError("--url is empty")
    return urls


def client_for(url: str | list[str], args: argparse.Namespace, **options: Any) -> AsyncClient:
    """A client for `url` (or several nodes) with the token, CA file and TLS choice of the command line
    or environment; a saved token is looked up under the first node's URL."""
    first = url if isinstance(url, str) else url[0]
    token = args.token or os.environ.get(ENV_TOKEN) or load_token(first, chosen_token_file(args))
    ca_file = args.ca_file or os.environ.get(ENV_CA_FILE)
    if ca_file is not None:
        try:
            ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            given = "--ca-file" if args.ca_file else ENV_CA_FILE
            raise UsageError(f"{given} {ca_file}: not a readable PEM CA bundle ({exc})") from None
    try:
        return AsyncClient(url, token=token, ca_file=ca_file, verify_tls=not args.insecure, **options)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def report_api_error(exc: ApiError, args: argparse.Namespace) -> None:
    """A refused or failed request on stderr, with a hint when the fix is on this side."""
    if isinstance(exc, TlsFailed):
        # The node is there: only the trust between the two ends is wrong.
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.untrusted:
            print(f"hint: give the CA that signed the node's certificate with --ca-file FILE (or {ENV_CA_FILE});"
                  " `jobnode dev --secure` prints where its CA is", file=sys.stderr)
        return
    if isinstance(exc, ConnectionFailed):
        print(f"error: {exc.message}", file=sys.stderr)
        print(
            f"hint: is a jobnode node running at {', '.join(getattr(args, 'urls', [args.url]))}?"
            f" Point at one with --url URL (or {ENV_URL}).",
            file=sys.stderr,
        )
        return
    print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
    if exc.details is not None:
        print(f"  details: {json.dumps(exc.details, sort_keys=True)}", file=sys.stderr)
    if isinstance(exc, AuthError):
        print(f"hint: log in with `jobnode login --url {args.url} --username NAME` or pass --token", file=sys.stderr)
