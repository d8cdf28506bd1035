"""Reading Server-Sent Events in tests: frames off an aiohttp response, with a deadline."""

from __future__ import annotations

import asyncio
from typing import Any

from jobnode.client import SseParser


async def read_events(response: Any, *, count: int | None = None, until: str | None = None,
                      timeout_s: float = 15.0) -> list[dict]:
    """Events from `response` until `count` were read, one named `until` was, or the stream ended."""
    parser, events = SseParser(), []
    async with asyncio.timeout(timeout_s):
        async for raw in response.content:
            event = parser.feed(raw.decode())
            if event is None:
                continue
            events.append(event)
            if (count is not None and len(events) >= count) or (until is not None and event["event"] == until):
                break
    return events
