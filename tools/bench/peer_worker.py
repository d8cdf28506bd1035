"""Start a peer's worker (`python -m tools.bench.<peer>`) as its own process, output to a log.

Its own session, so that stopping the bench's process group never takes the worker down
before the peer's run has stopped it in order.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def start_peer_worker(module: str, args: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", module, *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
