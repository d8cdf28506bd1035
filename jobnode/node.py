"""One jobnode node: the aiohttp application and everything it starts and stops.

Resources start in `cleanup_ctx` order and stop in reverse: connections first (Redis,
MongoDB), then the authenticator, then everything on top of them (`NodeServices`: job
store and queue, outbox writer, leadership, dispatcher, reconciler, workers, elector).
Handlers reach only the services, through the typed keys in `jobnode.api.appkeys`; the
raw clients and the node's parts stay under this module's own keys, never in globals.

The election (jobnode.cluster.elector driving jobnode/election/) decides who should lead and tells
`Leadership`, which takes the fenced lease in Redis; only the lease holder dispatches.
A lone node elects itself.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from jobnode.api import (auth_routes, cluster_routes, event_routes, jobs_routes, limit_routes, queue_routes,
                         ratelimit, schedule_routes, system_routes)
from jobnode.api.access import auth_middleware
from jobnode.api.appkeys import (
    AUTHENTICATOR,
    CLUSTER_SERVICE,
    EVENT_SERVICE,
    LIMIT_SERVICE,
    SCHEDULE_SERVICE,
    JOB_SERVICE,
    METRICS,
    QUEUE_SERVICE,
    RATE_LIMITER,
    SETTINGS,
    STREAM_TOKENS,
    SYSTEM_SERVICE,
    TLS,
)
from jobnode.api.errors import error_middleware
from jobnode.api.http_metrics import http_metrics_middleware
from jobnode.api.request_ids import request_id_middleware
from jobnode.api.startup_gate import startup_gate
from jobnode.api.tracing import tracing_middleware
from jobnode.assembly import NodeServices
from jobnode.auth.setup import AuthSetupError, make_authenticator, prepare_users
from jobnode.auth.tls import TlsContexts, peer_certificate_middleware
from jobnode.console import site as console_site
from jobnode.core.errors import JobnodeError
from jobnode.core.background import cancel_all
from jobnode.core.settings import ConfigError, Settings
from jobnode.observability import tracing
from jobnode.observability.metrics import NodeMetrics
from jobnode.observability.metrics_endpoint import MetricsEndpoint
from jobnode.processors.catalog import build_registry
from jobnode.processors.registry import ProcessorRegistry
from jobnode.storage.redis.connection import connect as connect_redis
from jobnode.storage.redis.queue import JobQueue

# The wiring's own keys: what the API must not reach.
REDIS = web.AppKey("redis", Redis)
MONGO = web.AppKey("mongo", AsyncMongoClient)
PROCESSORS = web.AppKey("processors", ProcessorRegistry)
NODE_SERVICES = web.AppKey("node_services", NodeServices)

log = structlog.get_logger(__name__)

# How long the start may take before the node serves its API (not ready) and goes on starting.
START_IN_FOREGROUND_S = 10.0


class StartupError(JobnodeError):
    """The node cannot start (its metrics port is taken, its start crashed); the message says why."""


def build_app(settings: Settings, processors: ProcessorRegistry | None = None) -> web.Application:
    """The node's application; `processors` replaces the configured registry (tests, embedding)."""
    contexts = TlsContexts.from_settings(settings)  # a certificate that does not load stops us here
    # Request ids, the request's span and HTTP metrics outermost: they must see every request and
    # its final status.
    # Errors outside auth, so a refused token is answered in the API's error shape; rate
    # limiting (appended by ratelimit.enable) inside auth, so it can count per user, and its
    # refusal counter (inserted by ratelimit.enable) just outside auth, so it sees auth's 401s.
    # The startup gate inside errors (its 503 in the API's shape) and outside auth (a node that
    # waits for MongoDB cannot look its users up).
    middlewares = [request_id_middleware, tracing_middleware, http_metrics_middleware, error_middleware,
                   startup_gate, auth_middleware]
    app = web.Application(client_max_size=settings.max_body_bytes, middlewares=middlewares)
    app[SETTINGS] = settings
    app[TLS] = contexts
    if contexts.mutual:
        app.middlewares.append(peer_certificate_middleware)
    app[PROCESSORS] = processors or build_registry(settings)
    app[METRICS] = NodeMetrics(app[PROCESSORS].types(), node_id=settings.node_id,
                               algorithm=settings.election_algorithm, strategy=settings.load_balancer_strategy)
    # Metrics first: a taken METRICS_PORT stops the node before it has started anything.
    app.cleanup_ctx.append(metrics_server)
    app.cleanup_ctx.append(connections)
    app.cleanup_ctx.append(authenticator)
    app.cleanup_ctx.append(services)
    app.router.add_routes(jobs_routes.routes)
    app.router.add_routes(system_routes.routes)
    app.router.add_routes(cluster_routes.routes)
    app.router.add_routes(auth_routes.routes)
    app.router.add_routes(event_routes.routes)
    app.router.add_routes(queue_routes.routes)
    app.router.add_routes(console_site.routes)
    app.router.add_routes(limit_routes.routes)
    app.router.add_routes(schedule_routes.routes)
    app.on_shutdown.append(close_event_streams)
    if settings.rate_limit_per_min > 0:
        ratelimit.enable(app, auth_middleware)
    return app


async def connections(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    connection = connect_redis(settings)
    redis = connection.client
    timeout_ms = int(settings.mongodb_timeout_s * 1000)
    # socketTimeoutMS too: without it a request waits forever on a MongoDB that stopped
    # answering (paused, or cut off without a reset) instead of getting a 503.
    mongo: AsyncMongoClient = AsyncMongoClient(
        settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
    )
    # Both clients connect lazily: a server that is down now is waited for by the node's start
    # (NodeServices.start), with /health saying which, instead of stopping the node.
    try:
        app[REDIS], app[MONGO] = redis, mongo
        yield
    finally:
        await connection.close()
        await mongo.close()


async def authenticator(app: web.Application) -> AsyncIterator[None]:
    """With AUTH_ENABLED: load USERS_FILE and make the authenticator (its users come with the start)."""
    settings = app[SETTINGS]
    if settings.auth_enabled:
        app[AUTHENTICATOR] = await make_authenticator(settings, app[REDIS], app[MONGO][settings.mongodb_database])
    yield


async def services(app: web.Application) -> AsyncIterator[None]:
    node = NodeServices.build(app[SETTINGS], app[REDIS], app[MONGO], app[PROCESSORS], app[METRICS],
                              peer_ssl=app[TLS].peer_client)
    app[NODE_SERVICES] = node
    app[JOB_SERVICE], app[CLUSTER_SERVICE], app[SYSTEM_SERVICE] = node.jobs, node.cluster, node.system
    app[EVENT_SERVICE] = node.events
    app[QUEUE_SERVICE] = node.queues
    app[LIMIT_SERVICE] = node.limits
    app[SCHEDULE_SERVICE] = node.schedules
    if node.events.stream_tokens is not None:
        app[STREAM_TOKENS] = node.events.stream_tokens
    if node.rate_limiter is not None:
        app[RATE_LIMITER] = node.rate_limiter
    starting = asyncio.create_task(bring_up(app, node), name="bring-up")
    # With its servers up the node is ready before it serves, as before; only a start that has
    # to wait for a server (or takes long) goes on behind the served API.
    try:
        await asyncio.wait_for(node.readiness.decided.wait(), timeout=START_IN_FOREGROUND_S)
    except asyncio.TimeoutError:
        pass
    if node.readiness.failure is not None:
        await node.stop()
        raise node.readiness.failure
    try:
        yield
    finally:
        await cancel_all([starting])
        await node.stop()


async def bring_up(app: web.Application, node: NodeServices) -> None:
    """Start the node behind its served API; what no retry can mend marks the start failed."""
    settings = app[SETTINGS]
    try:
        if settings.auth_enabled:
            await node.until_available("users", lambda: prepare_users(settings, app[AUTHENTICATOR]))
        await node.start()
    except JobnodeError as exc:
        node.readiness.fail(exc)
    except Exception as exc:
        log.exception("node.start_crashed")
        node.readiness.fail(StartupError(f"the start failed: {type(exc).__name__}: {exc}"))


async def close_event_streams(app: web.Application) -> None:
    """End the open event streams first on shutdown: they would otherwise hold it for its timeout."""
    node = app.get(NODE_SERVICES)
    if node is not None:
        node.events.hub.close_all()


async def metrics_server(app: web.Application) -> AsyncIterator[None]:
    """`/metrics` on METRICS_PORT while the node runs (nothing when METRICS_ENABLED=false)."""
    settings = app[SETTINGS]
    if not settings.metrics_enabled:
        yield
        return
    endpoint = MetricsEndpoint(app[METRICS], queue_of=lambda: _queue_of(app))
    runner = web.AppRunner(endpoint.app(), access_log=None)
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, settings.metrics_host, settings.metrics_port).start()
        except OSError as exc:
            raise StartupError(f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
                               f"(METRICS_PORT): {exc.strerror or exc}") from None
        log.info("metrics.listening", host=settings.server_host, port=settings.metrics_port, path="/metrics")
        yield
    finally:
        await runner.cleanup()


def _queue_of(app: web.Application) -> JobQueue | None:
    # None until `services` has built the node: the metrics endpoint starts before it.
    node = app.get(NODE_SERVICES)
    return node.queue if node is not None else None


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    app = build_app(settings)
    tracer_provider = tracing.configure_from_env(settings.node_id)  # OTEL_* variables; off without them
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_grace_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.server_host, settings.server_port, ssl_context=app[TLS].server)
        await site.start()
        log.info("node.listening", url=settings.advertise_url, host=settings.server_host,
                 port=settings.server_port, tls=settings.tls_enabled, mutual_tls=app[TLS].mutual)
        freeze_startup_heap()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        # POST /api/v1/cluster/leave ends the node too, once it has left the membership.
        readiness = app[NODE_SERVICES].readiness
        left = app[CLUSTER_SERVICE].stop_requested
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(left.wait()),
                 asyncio.create_task(readiness.failed.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        await cancel_all(waits)
        if readiness.failure is not None:
            raise readiness.failure
        if readiness.ready:
            await app[CLUSTER_SERVICE].leave_for_shutdown()
        log.info("node.stopping", node_id=settings.node_id)
    finally:
        await runner.cleanup()
        # After the node's own stop, whose last spans it flushes (a blocking export: off the loop).
        await asyncio.to_thread(tracing.shutdown, tracer_provider)


def freeze_startup_heap() -> None:
    """Keep the objects made while starting (modules, the app) out of later garbage collections.

    A full collection walks every tracked object; with the startup heap in it (~80,000
    objects) each one stopped the event loop for 26-41 ms under the bench's load, which
    every request in flight waited out. Frozen, those collections take 1-4 ms. Collected
    first, so no startup garbage is frozen with it.
    """
    gc.collect()
    gc.freeze()


def run_node(settings: Settings) -> None:
    """Blocking entry point of `jobnode serve`."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    try:
        runner(serve(settings))
    except (StartupError, AuthSetupError) as exc:
        log.error("node.start_failed", error=exc.message)
        raise SystemExit(f"jobnode: cannot start: {exc.message}") from None
    except ConfigError as exc:  # settings that parse but do not load (a TLS file, say)
        log.error("node.start_failed", error=str(exc))
        raise SystemExit(f"jobnode: configuration error: {exc}") from None
