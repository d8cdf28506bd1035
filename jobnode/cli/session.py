"""`jobnode login`: get a token and keep it for later commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from jobnode.cli.connection import client_command
from jobnode.cli.password_prompt import read_password
from jobnode.cli.tokens import chosen_token_file, save_token
from jobnode.cli.usage import UsageError
from jobnode.client import ApiError, AsyncClient


def add_login_parser(commands: Any, common: argparse.ArgumentParser) -> None:
    login = commands.add_parser("login", parents=[common], help="get a token and keep it for later commands")
    login.add_argument("--username", help="asked for on the terminal when not given")
    login.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    login.set_defaults(handler=client_command(run_login))


async def run_login(client: AsyncClient, args: argparse.Namespace) -> int:
    if not args.username:
        if args.password_stdin or not sys.stdin.isatty():
            raise UsageError("give --username NAME (there is no terminal to ask on)")
        args.username = input("username: ").strip()
    password = read_password(args)
    client.token = None  # a stale stored token must not decide how the login goes
    answer = await client.login(args.username, password)
    others = await _other_nodes(client, args.url)
    path = save_token([args.url, *others], args.username, answer, chosen_token_file(args))
    if args.json:
        print(json.dumps({k: answer.get(k) for k in ("token_type", "expires_in", "role")}
                         | {"token_file": str(path), "also_for": others}))
    else:
        print(f"logged in to {args.url} as {args.username} (role {answer.get('role', '-')}); token kept in {path}")
        if others:
            print(f"the token also serves the cluster's other nodes: {', '.join(others)}")
    return 0


async def _other_nodes(client: AsyncClient, url: str) -> list[str]:
    """The advertised URLs of the other members of this node's cluster, as the node knows them."""
    try:
        view = await client.election()
    except ApiError:  # a role that may not read it, or a node without the route: this node only
        return []
    addresses = {str(member.get("address") or "").rstrip("/") for member in view.get("members", [])}
    return sorted(address for address in addresses if address.startswith(("http://", "https://")) and address != url)
