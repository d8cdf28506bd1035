"""One reader per node fans the Redis event stream out to every subscriber on that node.

The hub runs one XREAD loop while the node has subscribers (none: it reads nothing); each
event is decoded and encoded once, then offered to every
subscription, which keeps it only if its filter matches. A subscription holds at most
`buffer_events` events the client has not taken yet: when a slow client lets it overflow,
the subscription is dropped (its buffer freed at once) and told so, and its connection is
ended with a stream.gap event. A slow client therefore costs the node a bounded amount of
memory and never delays the hub or other subscribers.

Subscribing is synchronous with the fan-out (both run on the event loop without awaiting in
between), so a new subscription's `start_id` is exactly the last event it will not get from
the hub: a resuming client replays up to it from Redis, then continues with the live events.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

import structlog

from jobnode.core.errors import Unavailable
from jobnode.events.event import Event, decode_event
from jobnode.events.filters import EventFilter
from jobnode.storage.redis.event_stream import EventStream

log = structlog.get_logger(__name__)

READ_COUNT = 1000
READ_BLOCK_MS = 1000
REDIS_DOWN_PAUSE_S = 0.5
TRIM_EVERY_S = 10.0


class Overflowed(Exception):
    """The subscription's buffer overflowed: the client is too slow and must resync."""


class Closed(Exception):
    """The node is stopping: the subscription ends (the client reconnects elsewhere)."""


class Subscription:
    """The events one client has yet to take, at most `capacity` of them."""

    __slots__ = ("filter", "capacity", "start_id", "overflowed", "closed", "_events", "_ready", "on_overflow")

    def __init__(self, event_filter: EventFilter, capacity: int, start_id: str) -> None:
        self.filter = event_filter
        self.capacity = capacity
        self.start_id = start_id
        self.overflowed = False
        self.closed = False
        self.on_overflow: Callable[[], None] | None = None
        self._events: deque[Event] = deque()
        self._ready = asyncio.Event()

    def offer(self, event: Event) -> bool:
        """Keep the event if it matches; False when this overflowed the buffer."""
        if not self.filter.matches(event):
            return True
        if len(self._events) >= self.capacity:
            self.overflowed = True
            self._events.clear()
            self._ready.set()
            if self.on_overflow is not None:
                self.on_overflow()
            return False
        self._events.append(event)
        self._ready.set()
        return True

    async def next(self, timeout_s: float) -> Event | None:
        """The next event; None when none came within `timeout_s`. Raises Overflowed."""
        if not self._events and not self.overflowed and not self.closed:
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._ready.wait()
            except TimeoutError:
                return None
        self.check()
        return self._events.popleft()

    def check(self) -> None:
        if self.overflowed:
            raise Overflowed()
        if self.closed:
            raise Closed()

    def close(self) -> None:
        self.closed = True
        self._ready.set()


class EventHub:
    """The node's one reader of P:events and its subscriptions."""

    def __init__(self, stream: EventStream, *, buffer_events: int, retention_s: float = 0.0,
                 read_count: int = READ_COUNT, block_ms: int = READ_BLOCK_MS) -> None:
        self.stream = stream
        self.buffer_events = buffer_events
        self.retention_s = retention_s
        # A burst is fanned out a read at a time, with the loop free in between to let the
        # subscribers' connections take it: a read larger than a buffer would overflow them all.
        self.read_count = max(1, min(read_count, buffer_events))
        self.block_ms = block_ms
        self.position = "0-0"  # the id of the last event fanned out (valid while reading)
        self.subscriptions: set[Subscription] = set()
        self.dropped = 0  # subscriptions dropped for overflowing, since start
        # The reader stops while nobody subscribes (most nodes, most of the time): it would
        # otherwise decode every event of the cluster for no one.
        self.reading = False
        self._activating = asyncio.Lock()
        self._wake = asyncio.Event()
        self._trimmed_at = 0.0

    @property
    def subscribers(self) -> int:
        return len(self.subscriptions)

    async def subscribe(self, event_filter: EventFilter) -> Subscription:
        """A new subscription; every event after its `start_id` will be offered to it."""
        async with self._activating:
            if not self.reading:
                # Start reading at the newest event now: what follows it reaches this subscription.
                self.position = (await self.stream.bounds()).last_id
                self.reading = True
                self._wake.set()
            # No await from the check above to here: the reader cannot stop in between.
            subscription = Subscription(event_filter, self.buffer_events, self.position)
            self.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscriptions.discard(subscription)

    def close_all(self) -> None:
        """End every subscription (the node is stopping)."""
        for subscription in self.subscriptions:
            subscription.close()

    async def run(self) -> None:
        while True:
            try:
                if not self.subscriptions and not self._activating.locked():
                    self.reading = False
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(TRIM_EVERY_S):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    await self._trim()
                    continue
                if not self.reading:  # a subscriber is starting the reader: let it set the position
                    self._wake.clear()  # (it sets `reading` and wakes us in one step, not yet taken)
                    await self._wake.wait()
                    continue
                entries = await self.stream.read_after(self.position, count=self.read_count, block_ms=self.block_ms)
                for entry_id, fields in entries:
                    self.fan_out(decode_event(entry_id, fields))
                await self._trim()
            except Unavailable as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError() from None  # the driver turned our cancel into this
                log.warning("events.redis_unavailable", error=str(exc))
                await asyncio.sleep(REDIS_DOWN_PAUSE_S)

    def fan_out(self, event: Event) -> None:
        self.position = event.id
        dropped = [s for s in self.subscriptions if not s.offer(event)]
        for subscription in dropped:
            self.subscriptions.discard(subscription)
        if dropped:
            self.dropped += len(dropped)
            log.info("events.subscribers_dropped", count=len(dropped), reason="buffer overflowed")

    async def _trim(self) -> None:
        """Drop events older than the retention (any node may: trimming twice is harmless)."""
        now = time.time()
        if self.retention_s <= 0 or now - self._trimmed_at < TRIM_EVERY_S:
            return
        self._trimmed_at = now
        # By this node's clock against ids of the Redis clock: skew only moves the edge a little.
        await self.stream.trim_before(f"{int((now - self.retention_s) * 1000)}-0")
