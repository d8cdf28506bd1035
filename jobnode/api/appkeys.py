"""Typed keys for everything the API handlers reach through the aiohttp application."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

if TYPE_CHECKING:
    from jobnode.auth.login import Authenticator
    from jobnode.cluster_store import ClusterStore
    from jobnode.elector import Elector
    from jobnode.peer_auth import Verifier
    from jobnode.config import Settings
    from jobnode.leadership import Leadership
    from jobnode.processors import ProcessorRegistry
    from jobnode.queue import JobQueue
    from jobnode.service import JobService
    from jobnode.stats import Throughput
    from jobnode.worker import WorkerPool

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
