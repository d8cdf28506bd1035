"""Typed keys for everything the API handlers reach through the aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

if TYPE_CHECKING:
    from jobnode.auth.login import Authenticator
    from jobnode.storage.mongo.cluster import ClusterStore
    from jobnode.cluster.elector import Elector
    from jobnode.auth.peer_signatures import Verifier
    from jobnode.core.settings import Settings
    from jobnode.cluster.leadership import Leadership
    from jobnode.observability.metrics import NodeMetrics
    from jobnode.processors.registry import ProcessorRegistry
    from jobnode.storage.redis.queue import JobQueue
    from jobnode.api.ratelimit import RateLimiter
    from jobnode.services.jobs import JobService
    from jobnode.observability.throughput import Throughput
    from jobnode.auth.tls import TlsContexts
    from jobnode.pipeline.workers import WorkerPool

SETTINGS = web.AppKey("settings", "Settings")
REDIS = web.AppKey("redis", Redis)
MONGO = web.AppKey("mongo", AsyncMongoClient)
QUEUE = web.AppKey("queue", "JobQueue")
SERVICE = web.AppKey("service", "JobService")
LEADERSHIP = web.AppKey("leadership", "Leadership")
POOL = web.AppKey("pool", "WorkerPool")
THROUGHPUT = web.AppKey("throughput", "Throughput")
PROCESSORS = web.AppKey("processors", "ProcessorRegistry")
CLUSTER_STORE = web.AppKey("cluster_store", "ClusterStore")
ELECTOR = web.AppKey("elector", "Elector")
PEER_VERIFIER = web.AppKey("peer_verifier", "Verifier")
AUTHENTICATOR = web.AppKey("authenticator", "Authenticator")
METRICS = web.AppKey("metrics", "NodeMetrics")

# Per request, set by jobnode.api.request_ids.
REQUEST_ID = web.RequestKey("request_id", str)
RATE_LIMITER = web.AppKey("rate_limiter", "RateLimiter")
TLS = web.AppKey("tls", "TlsContexts")
