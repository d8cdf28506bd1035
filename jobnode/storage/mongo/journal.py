"""Which journaled writes have come back, so that a commit can let a later one sync it.

SecantusDB commits a transaction without syncing its journal (see
`JobStore._journal_barrier`), and its journal is one sequential log: a journaled write that the
server takes after the commit syncs the commit with it. The submit path sends such writes all
the time (each acknowledgement waits for a journaled insert), so an outbox batch committed while
submissions flow need not pay for a sync of its own: it waits briefly for a journaled insert
that was *sent after its commit returned* to come back, and writes its own barrier only when
none does in time. That takes one synced write per outbox batch off the store exactly when
submissions are waiting on it, and the promise stays the same: the batch is journaled before
the writer acknowledges its outbox entries.

Only writes of the same `JobStore` count (same client, same server); a write that began
before the commit returned proves nothing, however late it comes back, because the server may
have logged it first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

# How long a committed batch waits for a journaled write to be sent after its commit, and
# only if the last one was sent at most this long before the commit: at a steady submit rate
# of 100/s and more the next insert leaves within that. Without recent ones (a drain, an idle
# API, a trickle of submissions) the batch writes its own barrier at once, as it always did.
START_WITHIN_S = 0.01
# How long, from its commit, a batch waits for such a write to come back before it writes
# its own barrier (an insert slowed by a loaded store must not hold the outbox up for long).
COVERED_WITHIN_S = 0.05


class JournalCover:
    """Tickets for the journaled writes in flight: `mark()` after a commit, `covered(mark)` to wait.

    A write takes a ticket when it is sent (`begin`) and returns it when its reply arrives
    (`end`, with `synced=False` when the server refused it: a refused write may not have
    synced anything). Tickets grow, so a ticket above a mark was sent after that mark was
    taken; the commit is journaled once any such write has come back synced."""

    def __init__(self) -> None:
        self._begun = 0  # tickets handed out
        self._synced = 0  # the highest ticket that came back synced
        self._last_begin_s = float("-inf")  # loop time the newest recurring write was sent
        self._waiters: list[tuple[int, bool, asyncio.Future[None]]] = []  # (mark, for a sync?, future)
        self.covered_count = 0  # commits a later write synced
        self.uncovered_count = 0  # commits that needed a barrier of their own

    def begin(self, *, recurring: bool = True) -> int:
        """A ticket for a journaled write about to be sent. `recurring`: one of a steady flow
        (the submit inserts), so that another is expected soon after it; a barrier is not."""
        self._begun += 1
        if recurring:
            self._last_begin_s = asyncio.get_running_loop().time()
        self._wake(lambda mark, for_sync: not for_sync and self._begun > mark)
        return self._begun

    def end(self, ticket: int, *, synced: bool) -> None:
        if synced and ticket > self._synced:
            self._synced = ticket
            self._wake(lambda mark, for_sync: self._synced > mark)

    def mark(self) -> int:
        """Take right after a commit returned: writes begun from now on are sent after it."""
        return self._begun

    def is_covered(self, mark: int) -> bool:
        return self._synced > mark

    async def covered(self, mark: int, *, start_within_s: float = START_WITHIN_S,
                      covered_within_s: float = COVERED_WITHIN_S) -> bool:
        """True once a journaled write sent after `mark` came back synced; False when none was
        sent within `start_within_s` (or none was sent in the `start_within_s` before it, so
        none is expected), or none came back within `covered_within_s` of the call."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + covered_within_s
        expected = loop.time() - self._last_begin_s <= start_within_s
        sent = self._begun > mark or (expected and await self._wait(mark, for_sync=False, timeout_s=start_within_s))
        synced = sent and (self.is_covered(mark) or await self._wait(
            mark, for_sync=True, timeout_s=max(0.0, deadline - loop.time())))
        if synced:
            self.covered_count += 1
        else:
            self.uncovered_count += 1
        return synced

    async def _wait(self, mark: int, *, for_sync: bool, timeout_s: float) -> bool:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (mark, for_sync, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake(self, ready: Callable[[int, bool], bool]) -> None:
        for mark, for_sync, future in list(self._waiters):
            if not future.done() and ready(mark, for_sync):
                future.set_result(None)
