"""Group commit: many concurrent callers, one round trip.

Callers hand in items and await their own result; a single flusher takes everything that
has queued up and writes it in one go. There is no timer: while a flush is in flight the
next batch forms by itself, so an idle system answers at once and a busy one writes in
large batches. Callers that need durability simply await their entry.

With `max_inflight` > 1, up to that many flushes run at once: an item that arrives while
one is in flight leaves at once instead of waiting for it to finish. At a moderate rate
that halves the wait of most callers (each used to wait out the remainder of the flush
ahead of it, then its own); under full load the slots fill and batches form as before.
Batches then finish in any order, so only items whose callers waited for each other are
ordered, which is all a caller can observe anyway.

With `max_waiting`, items beyond that many waiting (queued or being written) are refused
at once with `Overloaded`: when the writes cannot keep up (offered load above capacity,
or a slow database), callers get a quick answer to retry later instead of a queue, memory
and response times that grow without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from jobnode.core.background import cancel_all
from jobnode.core.errors import Overloaded

OVERLOADED_RETRY_AFTER_S = 1.0

T = TypeVar("T")
R = TypeVar("R")

Flush = Callable[[list[T]], Awaitable[Sequence["R | BaseException"]]]


class GroupCommit(Generic[T, R]):
    """Batches items from concurrent callers into calls of `flush` (`max_inflight` at a time)."""

    def __init__(self, flush: Flush, *, max_batch: int, max_waiting: int | None = None,
                 max_inflight: int = 1) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._max_waiting = max_waiting
        self._max_inflight = max_inflight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._inflight: list[list[tuple[T, asyncio.Future[R]]]] = []  # batches being written
        self._writes: set[asyncio.Task[None]] = set()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="group-commit")

    @property
    def running(self) -> bool:
        return self._task is not None

    async def stop(self) -> None:
        """Flush what is queued, then stop."""
        if self._task:
            self._kick.set()
            waiting = [future for batch in [*self._inflight, self._pending] for _, future in batch]
            await asyncio.gather(*waiting, return_exceptions=True)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def submit(self, item: T) -> R:
        result = (await self.submit_many([item]))[0]
        if isinstance(result, BaseException):
            raise result
        return result

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        """Queue items; returns, in order, each item's result or the error that refused it."""
        if self._task is None:
            raise RuntimeError("group commit is not running")
        waiting = len(self._pending) + sum(len(batch) for batch in self._inflight)
        if self._max_waiting is not None and waiting + len(items) > self._max_waiting and waiting > 0:
            raise Overloaded(
                f"{waiting} submissions are already waiting for their durable write (limit "
                f"{self._max_waiting}); retry shortly",
                retry_after_s=OVERLOADED_RETRY_AFTER_S, details={"waiting": waiting, "limit": self._max_waiting})
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures))
        self._kick.set()
        return list(await asyncio.gather(*futures, return_exceptions=True))

    async def _run(self) -> None:
        try:
            while True:
                await self._kick.wait()
                self._kick.clear()
                while self._pending and len(self._inflight) < self._max_inflight:
                    batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
                    self._inflight.append(batch)
                    if self._max_inflight == 1:  # no task per flush where flushes take turns anyway
                        await self._write_and_release(batch)
                    else:
                        write = asyncio.create_task(self._write_and_release(batch), name="group-commit-write")
                        self._writes.add(write)
                        write.add_done_callback(self._writes.discard)
        finally:
            await cancel_all(list(self._writes))

    async def _write_and_release(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            await self._write(batch)
        finally:
            self._inflight.remove(batch)
            self._kick.set()  # a slot is free: the next batch may go

    async def _write(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as exc:  # the whole batch failed: every caller gets the error
            results = [exc] * len(batch)
        for (_, future), result in zip(batch, results):
            if future.done():  # the caller gave up (cancelled); nothing to tell it
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
