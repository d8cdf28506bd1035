"""`jobnode status`: nodes, leader, workers and queue depths, once or as a redrawn watch."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from jobnode.cli.arguments import positive_float
from jobnode.cli.connection import client_command, client_for
from jobnode.cli.status_screen import StatusSnapshot, render_status
from jobnode.client import ApiError, AsyncClient, ConnectionFailed, NotFoundError, PermissionDenied, ServiceUnavailable

STATUS_TIMEOUT_S = 5.0  # per request: a dead node must not freeze the screen for the client's default 10s


def add_status_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    status = commands.add_parser(
        "status", parents=[common], help="nodes, leader, workers and queue depths",
        description="Show the cluster as one node sees it. --url may list several nodes separated by commas:"
        " the first that answers is asked, so a --watch carries on through that node's death.",
    )
    status.add_argument(
        "--watch", nargs="?", type=positive_float, const=2.0, metavar="SECONDS", help="refresh every SECONDS (2)"
    )
    status.set_defaults(handler=client_command(run_status, several_urls=True, timeout_s=STATUS_TIMEOUT_S))


# Answers that mean "ask another node": this one is down or cannot serve right now.
_NODE_UNAVAILABLE = (ConnectionFailed, ServiceUnavailable)


async def run_status(client: AsyncClient, args: argparse.Namespace) -> int:
    fallbacks = [client_for(url, args, **args.client_options, max_attempts=1) for url in args.urls[1:]]
    if fallbacks:  # with other nodes to ask, asking a silent one again only delays the screen
        client.max_attempts = 1
    try:
        if not args.watch:
            snapshot = await status_snapshot([client, *fallbacks])
            print(json.dumps(snapshot.as_json()) if args.json else render_status(snapshot))
            return 0
        await watch_status(client, args.watch, json_output=args.json, fallbacks=fallbacks)
        return 0
    finally:
        for other in fallbacks:
            await other.close()


async def watch_status(
    client: AsyncClient,
    interval_s: float,
    *,
    json_output: bool = False,
    iterations: int | None = None,
    fallbacks: Sequence[AsyncClient] = (),
) -> None:
    """Redraw the status every `interval_s`; a failing node is shown, not fatal (that is what one watches for).

    With fallbacks, a node that stops answering is replaced by the next one that does, so a watch
    started against the leader keeps going through its failover."""
    clients = [client, *fallbacks]
    clear = sys.stdout.isatty() and not json_output
    shown = 0
    while iterations is None or shown < iterations:
        try:
            snapshot = await status_snapshot(clients)
            url = snapshot.url
            text = json.dumps(snapshot.as_json()) if json_output else render_status(snapshot)
        except ApiError as exc:
            url = ", ".join(c.base_url for c in clients)
            text = json.dumps({"error": {"code": exc.code, "message": exc.message}}) if json_output else (
                f"error: {exc.code}: {exc.message}"
            )
        if clear:
            sys.stdout.write("\x1b[H\x1b[2J")
        print(text if json_output else f"{time.strftime('%H:%M:%S')}  {url}\n\n{text}\n", flush=True)
        shown += 1
        if iterations is None or shown < iterations:
            await asyncio.sleep(interval_s)


async def status_snapshot(clients: list[AsyncClient]) -> StatusSnapshot:
    """Ask the first node that answers; one that answers moves to the front for next time."""
    errors: list[ApiError] = []
    for index, client in enumerate(list(clients)):
        try:
            snapshot = await _snapshot_of(client)
        except _NODE_UNAVAILABLE as exc:
            errors.append(exc)
            continue
        if index:
            clients.insert(0, clients.pop(index))
        return snapshot
    if len(errors) == 1:
        raise errors[0]
    raise ConnectionFailed("no node answered: " + "; ".join(error.message for error in errors))


async def _snapshot_of(client: AsyncClient) -> StatusSnapshot:
    async def optional(fetch: Callable[[], Awaitable[dict]]) -> dict | None:
        try:
            return await fetch()
        except (NotFoundError, PermissionDenied):  # an older node, or a user token: show what we may see
            return None

    stats, leader, nodes, workers = await asyncio.gather(
        client.stats(), optional(client.leader), optional(client.nodes), optional(client.workers)
    )
    return StatusSnapshot(client.base_url, stats, leader, nodes, workers)
