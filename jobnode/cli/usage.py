"""Usage errors: the command line asks for something impossible, or this install lacks a command."""

from __future__ import annotations


class UsageError(Exception):
    """The command line asks for something impossible (exit 2)."""


def unavailable(command: str, exc: ModuleNotFoundError) -> Exception:
    """A missing jobnode module is a broken install (usage error); anything else missing is a real bug."""
    if not (exc.name or "").startswith("jobnode"):
        return exc
    return UsageError(f"`jobnode {command}` is not available in this installation (module {exc.name} is missing)")
