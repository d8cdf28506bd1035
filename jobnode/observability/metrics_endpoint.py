"""The `/metrics` endpoint on METRICS_PORT: a small aiohttp app apart from the API.

It lives on its own port so that scraping needs no API credentials and an API under
load (or behind a rate limit) does not starve monitoring. Queue depths are sampled from
Redis at scrape time; scrapes closer together than `QUEUE_SAMPLE_MIN_INTERVAL_S` reuse the
last sample, so any number of Prometheus servers cost Redis at most one pipelined round
trip per second. If Redis does not answer within `QUEUE_SAMPLE_TIMEOUT_S` the scrape still
succeeds, without `jobnode_queue_depth` series.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from jobnode.observability.metrics import NodeMetrics
from jobnode.storage.redis.queue import JobQueue

log = structlog.get_logger(__name__)

QUEUE_SAMPLE_TIMEOUT_S = 2.0
QUEUE_SAMPLE_MIN_INTERVAL_S = 1.0


class MetricsEndpoint:
    """Serves one node's registry in the Prometheus text format."""

    def __init__(self, metrics: NodeMetrics, queue_of: Callable[[], JobQueue | None]) -> None:
        self.metrics = metrics
        # The endpoint starts before the node's connections (see jobnode.node): until they are
        # up there is no queue to sample, and scrapes say so by having no depth series.
        self.queue_of = queue_of
        self._sampled_at: float | None = None
        self._sampling = asyncio.Lock()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        await self._sample_queue()
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _sample_queue(self) -> None:
        queue = self.queue_of()
        if queue is None:
            return
        async with self._sampling:  # concurrent scrapes share one sample
            now = asyncio.get_running_loop().time()
            if self._sampled_at is not None and now - self._sampled_at < QUEUE_SAMPLE_MIN_INTERVAL_S:
                return
            try:
                await asyncio.wait_for(self.metrics.refresh_queue_depth(queue), QUEUE_SAMPLE_TIMEOUT_S)
            except Exception as exc:  # Redis down or slow: serve the rest of the metrics anyway
                log.warning("metrics.queue_depth_unavailable", error=str(exc) or type(exc).__name__)
            self._sampled_at = now
