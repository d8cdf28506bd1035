"""Importing the user's modules (JOBNODE_IMPORTS, `--import`), so the processors they register are served.

The node imports them once logging is configured (their import-time log lines then carry the
node's fields and pass the secret scrubbing) and before it builds its registry.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable

from jobnode.core.errors import JobnodeError


class ImportFailed(JobnodeError):
    """A module named to be imported at start could not be; the message is one line."""

    def __init__(self, module: str, error: BaseException) -> None:
        reason = str(error).splitlines()[0] if str(error) else ""
        super().__init__(f"cannot import {module!r}: {type(error).__name__}" + (f": {reason}" if reason else ""))
        self.module = module


def import_modules(names: Iterable[str]) -> list[str]:
    """Import each module in order (each once); raises ImportFailed at the first that fails."""
    imported = []
    for name in dict.fromkeys(names):
        # The working directory first, as `python -m` has it: `--import myapp.jobs` run from a
        # project folder finds the project's package without installing it.
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit or KeyboardInterrupt in module code too
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise ImportFailed(name, exc) from exc
        imported.append(name)
    return imported
