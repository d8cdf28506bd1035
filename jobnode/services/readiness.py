"""Whether the node has finished starting, and if not, which server it is waiting for.

A node that starts while Redis or MongoDB is down does not exit: it serves `/health` as not
ready (503, a `startup` check naming the server) and answers other requests with 503 while
it retries with back-off; it becomes ready once the server answers. Only errors a retry
cannot mend (configuration, a users setup nobody could log in with) stop it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobnode.core.errors import JobnodeError


class Readiness:
    """The node's start, as the API sees it."""

    def __init__(self) -> None:
        self.ready = False
        self.waiting_for: str | None = None  # the server the last failed step could not reach
        self.failure: JobnodeError | None = None
        self.failed = asyncio.Event()
        # Set at the first sign of how the start goes: done, waiting for a server, or failed.
        self.decided = asyncio.Event()

    @classmethod
    def already_started(cls) -> Readiness:
        """For a service used without a node's start (tests, embedding)."""
        readiness = cls()
        readiness.done()
        return readiness

    def waiting(self, server: str) -> None:
        self.waiting_for = server
        self.decided.set()

    def done(self) -> None:
        self.ready, self.waiting_for = True, None
        self.decided.set()

    def fail(self, error: JobnodeError) -> None:
        """The start met an error no retry can mend: the node must stop (see `jobnode.node.serve`)."""
        self.failure = error
        self.failed.set()
        self.decided.set()

    def check(self) -> dict[str, Any]:
        """The `startup` check of /health while the node is not ready."""
        if self.waiting_for is None:
            return {"ok": False, "error": "starting"}
        return {"ok": False, "error": f"starting: waiting for {self.waiting_for}"}

    def refusal(self) -> str:
        """What a request that needs the started node is told meanwhile."""
        return "node is starting" + (f": waiting for {self.waiting_for}" if self.waiting_for else "")
