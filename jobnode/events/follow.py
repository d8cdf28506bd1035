"""One subscriber's view of the stream: replay from where it left off, then live events.

`follow` yields what the connection is to send, in order: events, a Gap when the client
missed events (it resumed from beyond the retention, or it fell behind and overflowed its
buffer, after which nothing more follows), and None when nothing happened for a heartbeat
interval (the connection sends a comment so that proxies keep it open).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from jobnode.events.event import STREAM_GAP, Event, decode_event
from jobnode.events.filters import EventFilter
from jobnode.events.hub import Closed, EventHub, Overflowed, Subscription
from jobnode.events.resume import is_after, resume_point

REPLAY_PAGE = 500


@dataclass(frozen=True)
class Gap:
    """The client missed events: `reason` is "retention" or "slow_subscriber"."""

    reason: str
    last_event_id: str | None
    resumes_after: str | None = None

    @property
    def frame(self) -> bytes:
        data: dict[str, Any] = {"reason": self.reason, "last_event_id": self.last_event_id}
        if self.reason == "retention":
            data["message"] = ("events after last_event_id were dropped from the stream's retention; "
                               "re-read the state you follow, then carry on with the events that come next")
        else:
            data["message"] = ("this connection fell too far behind and is closed; re-read the state you follow, "
                               "then reconnect (with Last-Event-ID to replay what the retention still holds)")
        # No id: a reconnecting EventSource sends the id of the last event it really got.
        return b"event: %s\ndata: %s\n\n" % (STREAM_GAP.encode(), orjson.dumps(data))


Item = Event | Gap | None


async def follow(hub: EventHub, event_filter: EventFilter, *, last_event_id: str | None, heartbeat_s: float,
                 on_overflow: Callable[[], None] | None = None) -> AsyncGenerator[Item, None]:
    """Subscribe now, and return what the subscriber is to be sent (see the module docstring).

    Subscribed before it returns: every event after this call reaches the subscriber, so a
    caller that answers "subscribed" afterwards (an HTTP response's headers) tells the truth.
    `last_event_id` None: only events from now on."""
    subscription = await hub.subscribe(event_filter)
    subscription.on_overflow = on_overflow
    return _items(hub, subscription, event_filter, last_event_id, heartbeat_s)


async def _items(hub: EventHub, subscription: Subscription, event_filter: EventFilter, last_event_id: str | None,
                 heartbeat_s: float) -> AsyncGenerator[Item, None]:
    delivered = last_event_id
    try:
        if last_event_id is not None:
            point = resume_point(last_event_id, await hub.stream.bounds())
            if point.gap:
                yield Gap("retention", last_event_id)
            cursor = point.after_id
            while is_after(subscription.start_id, cursor):
                entries = await hub.stream.range_after(cursor, count=REPLAY_PAGE, until_id=subscription.start_id)
                if not entries:
                    break
                for entry_id, fields in entries:
                    cursor = entry_id
                    event = decode_event(entry_id, fields)
                    if event_filter.matches(event):
                        delivered = event.id
                        yield event
                subscription.check()
        while True:
            event = await subscription.next(heartbeat_s)
            if event is not None:
                delivered = event.id
            yield event
    except Overflowed:
        yield Gap("slow_subscriber", delivered)
    except Closed:
        return
    finally:
        hub.unsubscribe(subscription)
