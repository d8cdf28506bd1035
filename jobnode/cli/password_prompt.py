"""Reading a password from the terminal, or from standard input with --password-stdin."""

from __future__ import annotations

import argparse
import getpass
import sys

from jobnode.cli.usage import UsageError


def read_password(args: argparse.Namespace, *, confirm: bool = False) -> str:
    """The password for `args.username`; with `confirm`, a terminal user types it twice."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.username}: ")
        if confirm and getpass.getpass("the same password again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        raise UsageError("no terminal to ask for the password on; pipe it in with --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    return password
