"""The token file `jobnode login` writes and later commands read, one token per node URL.

A login stores its token for the node logged in to and for the other nodes of its cluster
(they share the key that signs tokens, so each accepts it); a token is never sent elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

ENV_TOKEN_FILE = "JOBNODE_TOKEN_FILE"


def token_path(override: Path | None = None) -> Path:
    """Where `jobnode login` keeps tokens: --token-file, else ~/.config/jobnode/token.json (XDG_CONFIG_HOME)."""
    if override is not None:
        return override
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "jobnode" / "token.json"


def chosen_token_file(args: argparse.Namespace) -> Path | None:
    """The token file named by --token-file or JOBNODE_TOKEN_FILE; None for the default place."""
    chosen = getattr(args, "token_file", None) or os.environ.get(ENV_TOKEN_FILE)
    return Path(chosen).expanduser() if chosen else None


def load_token(url: str, path: Path | None = None) -> str | None:
    """The stored token for this URL, unless it has expired."""
    try:
        entry = json.loads(token_path(path).read_text())["tokens"][url]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if entry.get("expires_at") and entry["expires_at"] <= time.time():
        return None
    return entry.get("access_token")


def save_token(urls: str | Sequence[str], username: str, answer: dict, path: Path | None = None) -> Path:
    """Store a login answer for these URLs (one node's, or a cluster's) in a file only the user can read."""
    path = token_path(path)
    try:
        stored = json.loads(path.read_text())
        stored["tokens"].items()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        stored = {"tokens": {}}
    expires_in = answer.get("expires_in")
    entry = {
        "username": username,
        "role": answer.get("role"),
        "access_token": answer["access_token"],
        "expires_at": time.time() + expires_in if isinstance(expires_in, (int, float)) else None,
    }
    for url in [urls] if isinstance(urls, str) else urls:
        stored["tokens"][url] = entry
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    # Created 0600 from the start, so the token is never readable by others, even briefly.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(stored, out, indent=2)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path
