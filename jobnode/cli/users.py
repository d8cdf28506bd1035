"""`jobnode user add`: write a user with a scrypt password hash into the users file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from jobnode.cli.password_prompt import read_password
from jobnode.cli.usage import UsageError


def add_user_parser(commands: Any) -> None:
    user = commands.add_parser("user", help="manage the users of USERS_FILE")
    actions = user.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = actions.add_parser("add", help="add a user, or replace one's role and password")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=("admin", "user", "worker"))
    add.add_argument("--users-file", type=Path, help="the users file (default: $USERS_FILE)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.set_defaults(handler=run_user_add)


def run_user_add(args: argparse.Namespace) -> int:
    """`jobnode user add NAME --role R`: hash the password with scrypt and write the users file (0600)."""
    # Imported here: the client commands need none of the server's auth code.
    from jobnode.auth.passwords import hash_password
    from jobnode.auth.users import USERNAME, User, UsersFileError, write_user
    from jobnode.core.settings import weak_password_problem

    path = args.users_file or (Path(os.environ["USERS_FILE"]) if os.environ.get("USERS_FILE") else None)
    if path is None:
        raise UsageError("say which users file to write with --users-file FILE (or set USERS_FILE)")
    if not USERNAME.fullmatch(args.username):
        raise UsageError(f"user name {args.username!r} must be 1-64 letters, digits, '.', '_', '@' or '-'")
    password = read_password(args, confirm=True)
    problem = weak_password_problem(password)
    if problem:
        raise UsageError(f"refusing that password: {problem}")
    try:
        replaced = write_user(path.expanduser(), User(args.username, args.role, hash_password(password)))
    except UsersFileError as exc:
        raise UsageError(exc.message) from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(f"{'updated' if replaced else 'added'} {args.username} (role {args.role}) in {path}; "
          "running nodes pick the change up at the next login")
    return 0
