"""The events section: many subscribers on one node, what they cost it, and how soon a job's
completion reaches a subscriber on another node.

`subscribers` connections are opened to node-2's GET /api/v1/events, each filtered to the
completions of jobs whose id starts with its own random 4-hex prefix (the shape of many
clients each waiting for some jobs: the node matches every event against every filter, but
sends each connection little). The node's RSS before and after gives the cost per 1,000.
Then jobs are submitted to node-1 at a fixed rate while one more subscriber on node-2 takes
every completion: delivery is the moment it reads the event minus the event's stream id
(the Redis clock's millisecond of the completion; Redis runs on this machine, so both
clocks are the same).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from jobnode.client import AsyncClient, SseParser
from tools.bench.cluster import progress
from tools.bench.workloads import NOOP, percentiles_ms
from tools.procfs import rss_mib

OPEN_IN_PARALLEL = 100
SETTLE_S = 2.0  # after the connections open, before reading the node's RSS


async def run_events(urls: Sequence[str], watched_pid: int, *, subscribers: int, rate_per_s: float,
                     duration_s: float, timeout_s: float) -> dict[str, Any]:
    submit_url, watched_url = urls[0], urls[-1]
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout)
    held: list[aiohttp.ClientResponse] = []
    try:
        await asyncio.sleep(SETTLE_S)
        rss_before = rss_mib(watched_pid)
        progress(f"events: opening {subscribers} subscribers on {watched_url}")
        opened = await _open(session, watched_url, subscribers, held)
        await asyncio.sleep(SETTLE_S)
        rss_after = rss_mib(watched_pid)
        delivery = await _delivery(session, submit_url, watched_url, rate_per_s, duration_s, timeout_s)
        per_1000 = (round((rss_after - rss_before) * 1000 / opened, 1)
                    if opened and rss_before is not None and rss_after is not None else None)
        return {
            "subscribers": opened,
            "subscriber_filter": "event=job.completed&job=<a random 4-hex prefix each>",
            "watched_node": "the last node", "submitted_to": "node-1",
            "rss_mib": {"before": rss_before, "with_subscribers": rss_after},
            "rss_mib_per_1000_subscribers": per_1000,
            **delivery,
        }
    finally:
        for response in held:
            response.close()
        await session.close()


async def _open(session: aiohttp.ClientSession, url: str, count: int, held: list[aiohttp.ClientResponse]) -> int:
    gate = asyncio.Semaphore(OPEN_IN_PARALLEL)

    async def one() -> bool:
        async with gate:
            params = {"event": "job.completed", "job": secrets.token_hex(2)}
            response = await session.get(f"{url}/api/v1/events", params=params)
            held.append(response)
            return response.status == 200

    return sum(await asyncio.gather(*(one() for _ in range(count))))


async def _delivery(session: aiohttp.ClientSession, submit_url: str, watched_url: str, rate_per_s: float,
                    duration_s: float, timeout_s: float) -> dict[str, Any]:
    count = max(1, int(rate_per_s * duration_s))
    delays_s: dict[str, float] = {}
    response = await session.get(f"{watched_url}/api/v1/events", params={"event": "job.completed"})
    assert response.status == 200, f"the measuring subscriber got {response.status}"

    async def read() -> None:
        parser = SseParser()
        async for raw in response.content:
            event = parser.feed(raw.decode())
            if event is not None and event["id"]:
                completed_ms = int(event["id"].partition("-")[0])
                delays_s[event["data"]["job"]] = time.time() - completed_ms / 1000

    reader = asyncio.create_task(read())
    client = AsyncClient(submit_url, timeout_s=30)
    try:
        await client.wait((await client.submit(**NOOP))["id"], timeout_s=60)  # warm-up
        progress(f"events: delivery of {count} completions at {rate_per_s:g} jobs/s")
        loop = asyncio.get_running_loop()
        begin, ids = loop.time(), []

        async def submit() -> None:
            ids.append((await client.submit(**NOOP))["id"])

        tasks = []
        for n in range(count):
            await asyncio.sleep(max(0.0, begin + n / rate_per_s - loop.time()))
            tasks.append(asyncio.create_task(submit()))
        await asyncio.gather(*tasks)
        offered_s = loop.time() - begin
        deadline = loop.time() + timeout_s
        while not set(ids) <= set(delays_s) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        measured = [delays_s[job_id] for job_id in ids if job_id in delays_s]
        return {"offered_per_s": rate_per_s, "achieved_offered_per_s": round(count / offered_s, 1),
                "jobs": count, "delivered": len(measured),
                "delivery_ms": percentiles_ms(measured), "resolution_ms": 1}
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        response.close()
        await client.close()
