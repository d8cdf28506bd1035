"""Typed keys for what the API handlers and middlewares reach through the aiohttp application.

Routes reach the node only through the services; the middlewares need the authenticator,
the rate limiter and the metrics. The wiring (jobnode.node) fills these in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from jobnode.auth.login import Authenticator
    from jobnode.auth.stream_tokens import StreamTokens
    from jobnode.auth.tls import TlsContexts
    from jobnode.core.settings import Settings
    from jobnode.observability.metrics import NodeMetrics
    from jobnode.services.cluster import ClusterService
    from jobnode.services.events import EventService
    from jobnode.services.jobs import JobService
    from jobnode.services.queues import QueueService
    from jobnode.services.rate_limiter import RateLimiter
    from jobnode.services.system import SystemService

SETTINGS = web.AppKey("settings", "Settings")
TLS = web.AppKey("tls", "TlsContexts")
METRICS = web.AppKey("metrics", "NodeMetrics")
JOB_SERVICE = web.AppKey("job_service", "JobService")
CLUSTER_SERVICE = web.AppKey("cluster_service", "ClusterService")
SYSTEM_SERVICE = web.AppKey("system_service", "SystemService")
QUEUE_SERVICE = web.AppKey("queue_service", "QueueService")
AUTHENTICATOR = web.AppKey("authenticator", "Authenticator")
STREAM_TOKENS = web.AppKey("stream_tokens", "StreamTokens")
EVENT_SERVICE = web.AppKey("event_service", "EventService")
RATE_LIMITER = web.AppKey("rate_limiter", "RateLimiter")

# Per request, set by jobnode.api.request_ids.
REQUEST_ID = web.RequestKey("request_id", str)
