"""Everything a node runs on top of its Redis and MongoDB connections, built, started and stopped in order.

The API reaches the node through the services built here (`jobs`, `cluster`, `system`,
and the `rate_limiter` when RATE_LIMIT is set); the parts below them stay in this object.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from pymongo import AsyncMongoClient
from redis.asyncio import Redis

from jobnode.auth.peer_signatures import Verifier
from jobnode.auth.stream_tokens import StreamTokens
from jobnode.cluster.elector import Elector
from jobnode.cluster.leadership import Leadership
from jobnode.cluster.peers import PeerTransport
from jobnode.cluster.quorum import PeerContact
from jobnode.cluster.recorder import ClusterRecorder
from jobnode.cluster.seeds import SeedContact
from jobnode.core import store_errors
from jobnode.core.background import Backoff, cancel_all, supervise
from jobnode.core.errors import Unavailable
from jobnode.core.flow_limits import parse_flow_limits
from jobnode.core.queues import served_queues, worker_groups
from jobnode.core.settings import Settings
from jobnode.events.hub import EventHub
from jobnode.observability.metrics import NodeMetrics, NodeReadings
from jobnode.observability.throughput import Throughput
from jobnode.pipeline.dispatcher import DispatchSettings, Dispatcher
from jobnode.pipeline.job_reports import JobReports
from jobnode.pipeline.outbox import OutboxWriter
from jobnode.pipeline.reconciler import Reconciler
from jobnode.pipeline.retention import RetentionSweep
from jobnode.pipeline.retry import RetryPolicy
from jobnode.pipeline.workers import PoolSettings, WorkerPool
from jobnode.processors.registry import ProcessorRegistry
from jobnode.services.cluster import ClusterService
from jobnode.services.catalog import TypeCatalog
from jobnode.services.events import EventService
from jobnode.services.jobs import JobService
from jobnode.services.queues import QueueService
from jobnode.services.limits import LimitService
from jobnode.services.schedules import ScheduleService, Scheduler
from jobnode.services.rate_limiter import RateLimiter
from jobnode.services.readiness import Readiness
from jobnode.services.system import SystemService
from jobnode.storage.mongo.cluster import ClusterStore
from jobnode.storage.mongo.fence import FenceCounter
from jobnode.storage.mongo.jobs import JobStore
from jobnode.storage.mongo.schedules import ScheduleStore
from jobnode.storage.redis.catalog import CatalogStore
from jobnode.storage.redis.event_stream import EventStream
from jobnode.storage.redis.flow_limits import FlowLimitStore
from jobnode.storage.redis.job_logs import JobLogs
from jobnode.storage.redis.lease import LeaderLease
from jobnode.storage.redis.queue import JobQueue
from jobnode.storage.redis.queue_depths import QueueDepths
from jobnode.storage.redis.rate_buckets import RateBuckets

log = structlog.get_logger(__name__)

OUTBOX_FLUSH_AT_STOP_S = 5.0
# Retries of a start step whose server is down: from 0.2 s, doubling, at most 5 s apart.
START_RETRY_BASE_S = 0.2
START_RETRY_MAX_S = 5.0


@dataclass
class NodeServices:
    """The node's moving parts; `stop()` is safe after a start that failed half-way."""

    settings: Settings
    store: JobStore
    queue: JobQueue
    registry: ProcessorRegistry
    jobs: JobService
    leadership: Leadership
    pool: WorkerPool
    outbox: OutboxWriter
    dispatcher: Dispatcher
    reconciler: Reconciler
    retention: RetentionSweep
    cluster_store: ClusterStore
    transport: PeerTransport
    verifier: Verifier
    elector: Elector
    recorder: ClusterRecorder
    cluster: ClusterService
    system: SystemService
    rate_limiter: RateLimiter | None
    events: EventService
    reports: JobReports
    queues: QueueService
    limits: LimitService
    schedules: ScheduleService
    scheduler: Scheduler
    readiness: Readiness
    metrics: NodeMetrics | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _pool_started: bool = False
    _unsubscribe: list[Callable[[], None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, redis: Redis, mongo: AsyncMongoClient,
              registry: ProcessorRegistry, metrics: NodeMetrics | None = None, *,
              peer_ssl: ssl.SSLContext | None = None) -> NodeServices:
        db = mongo[settings.mongodb_database]
        store = JobStore(db, stale_reads=settings.mongodb_read_preference, retention_s=settings.job_retention_s,
                         retention_by_type_s=settings.job_retention_by_type_s)
        queue = JobQueue(redis, settings.redis_key_prefix, events_max_entries=settings.events_max_entries)
        lease = LeaderLease(redis, queue.scripts, queue.prefix, settings.node_id, settings.leader_lease_ttl_s,
                            floors=FenceCounter(db))
        leadership = Leadership(lease)
        metrics = metrics or NodeMetrics(registry.types())
        job_logs = JobLogs(redis, settings.redis_key_prefix, retention_s=settings.job_log_retention_s)
        reports = JobReports(queue, job_logs, progress_interval_s=settings.job_progress_interval_s)
        pool = WorkerPool(pool_settings(settings, registry), queue, registry, metrics, reports)
        # Without a configured secret nobody can reach the peer route (a lone node needs none).
        secret = (settings.cluster_secret or secrets.token_hex(32)).encode()
        contact = PeerContact.for_cluster(
            [url for node, url in settings.peers.items() if node != settings.node_id],
            settings.election_timeout_s, settings.election_interval_s)
        own_url = settings.advertise_url.rstrip("/")
        seeds = SeedContact(tuple(s for s in settings.seeds if s != own_url), settings.seed_retry_max_s,
                            random.Random(os.urandom(8)))
        transport = PeerTransport(settings.node_id, secret, timeout_s=peer_timeout_s(settings),
                                  ssl_context=peer_ssl, on_reached=contact.reached, seeds=seeds)
        elector = Elector(settings, transport, leadership, contact)
        cluster_store = ClusterStore(db)
        recorder = ClusterRecorder(cluster_store, settings, elector, leadership, lambda: pool.busy, queue,
                                   workers_total=len(pool.workers))
        elector.on_leader_change = recorder.on_leader_change
        catalog = TypeCatalog(CatalogStore(redis, settings.redis_key_prefix), queue, settings.node_id,
                              registry.specs(), list(served_queues(settings.queues, registry.queues())),
                              default_durability=settings.durability)
        jobs = JobService(store, queue, catalog=catalog, max_batch=settings.commit_max_batch, metrics=metrics,
                          idle_workers=pool.idle if settings.local_start and pool.workers else None,
                          leader_known=lambda: elector.view.leader is not None)
        verifier = Verifier(secret)
        dispatcher = Dispatcher(queue, leadership, dispatch_settings(settings))
        reconciler = Reconciler(store, queue, grace_s=settings.reconcile_interval_s)
        retention = RetentionSweep(store, cluster_store)
        metrics.watch(node_readings(pool, leadership, elector, reconciler=reconciler, dispatcher=dispatcher,
                                    verifier=verifier))
        rate_limiter = (RateLimiter(RateBuckets(redis, settings.redis_key_prefix), settings.rate_limit_per_min,
                                    settings.rate_limit_burst)
                        if settings.rate_limit_per_min > 0 else None)
        hub = EventHub(EventStream(redis, settings.redis_key_prefix), buffer_events=settings.events_subscriber_buffer,
                       retention_s=settings.events_retention_s)
        stream_tokens = StreamTokens(settings.jwt_secret) if settings.auth_enabled and settings.jwt_secret else None
        events = EventService(hub, jobs, job_logs, heartbeat_s=settings.events_heartbeat_s,
                              stream_tokens=stream_tokens)
        limits = LimitService(FlowLimitStore(redis, settings.redis_key_prefix), parse_flow_limits(settings.flow_limits or ""))
        schedules = ScheduleService(ScheduleStore(db), jobs, settings.job_defaults)
        probes = {"redis": redis.ping, "mongodb": lambda: mongo.admin.command("ping")}
        throughput = Throughput()
        readiness = Readiness()
        cluster = ClusterService(settings, elector, leadership, cluster_store, verifier)
        return cls(
            settings=settings, store=store, queue=queue, registry=registry, jobs=jobs,
            leadership=leadership, pool=pool,
            outbox=OutboxWriter(queue, store, settings.node_id, max_batch=settings.commit_max_batch,
                                interval_s=settings.commit_interval_s),
            dispatcher=dispatcher, reconciler=reconciler, retention=retention, metrics=metrics,
            cluster_store=cluster_store, transport=transport, verifier=verifier,
            elector=elector, recorder=recorder,
            cluster=cluster,
            system=SystemService(settings, jobs, queue, leadership, pool, probes, rate_limiter,
                                 throughput=throughput, leader_of=lambda: elector.view.leader,
                                 reports={"seeds": lambda: seeds.report(
                                     elector.joined, asyncio.get_running_loop().time())},
                                 advisories={"quorum": cluster.quorum}, limits=limits,
                                 readiness=readiness),
            rate_limiter=rate_limiter, events=events, reports=reports, limits=limits,
            schedules=schedules, scheduler=Scheduler(schedules, leadership),
            queues=QueueService(queue, QueueDepths(redis, settings.redis_key_prefix), throughput.history),
            readiness=readiness,
        )

    async def start(self) -> None:
        """Start every part; a step that needs a server that is down is retried until it answers.

        Meanwhile `readiness` says which server the node waits for (/health answers 503 with
        it), so a node started during an outage comes up with the server instead of exiting."""
        s = self.settings
        if self.metrics is not None:
            self._unsubscribe.append(store_errors.subscribe(self.metrics.store_error))
        await self.until_available("indexes", self.store.ensure_indexes)
        await self.until_available("indexes", self.cluster_store.ensure_indexes)
        await self.until_available("limits", self.limits.apply_configured)
        # Before the workers: a job routed here can be checked.
        await self.until_available("catalog", lambda: self.jobs.catalog.publish(replace=True))
        self.jobs.start()
        await self.transport.start()
        self.tasks = [
            supervise("leadership", self.leadership.run),
            supervise("outbox", self.outbox.run),
            supervise("dispatcher", self.dispatcher.run),
            supervise("scheduler", self.scheduler.run),
            supervise("reconciler", lambda: self.reconciler.run(self.leadership, s.reconcile_interval_s)),
            supervise("retention", lambda: self.retention.run(self.leadership, s.retention_sweep_interval_s)),
            supervise("events", self.events.hub.run),
            supervise("job_reports", self.reports.run),
            supervise("catalog", self.jobs.catalog.run),
            supervise("throughput", lambda: self.system.throughput.run(self.queue.completed_total,
                                                                   s.throughput_sample_interval_s)),
        ]
        await self.until_available("workers", self.pool.start)  # registers them in Redis first
        self._pool_started = True
        await self.elector.start()  # last: the node takes part in elections once it can do the work
        self.tasks.append(supervise("cluster", self.recorder.run))
        self.readiness.done()
        log.info("node.ready", node_id=s.node_id, workers=len(self.pool.workers), processors=self.registry.types(),
                 queues=sorted({q for worker in self.pool.workers for q in worker.queues}),
                 strategy=s.load_balancer_strategy, algorithm=s.election_algorithm)

    async def until_available(self, step: str, run: Callable[[], Awaitable[object]]) -> None:
        """Run one start step until no server it needs is unavailable, with back-off between tries."""
        backoff = Backoff(base_s=START_RETRY_BASE_S, max_s=START_RETRY_MAX_S)
        while True:
            try:
                await run()
                return
            except Unavailable as exc:
                server = unavailable_server(exc)
                self.readiness.waiting(server)
                wait_s = backoff.next_s()
                log.warning("node.start_waiting", step=step, server=server, retry_in_s=round(wait_s, 2),
                            attempt=backoff.failures)
                await asyncio.sleep(wait_s)

    async def stop(self) -> None:
        # Hand the lead over first (raft transfers it, and the lease is released for the
        # next leader), then let running jobs finish, then write what is left to MongoDB.
        steps = [
            ("election", self.elector.stop()),
            ("lease", self.leadership.resign()),
            # Workers that never registered (a start still waiting for Redis) have nothing to hand back.
            *([("workers", self.pool.stop(self.settings.shutdown_grace_s))] if self._pool_started else []),
            ("job_reports", self.reports.flush()),
            ("submits", self.jobs.stop()),
            ("tasks", cancel_all(self.tasks)),
            ("outbox", self.outbox.flush(timeout_s=OUTBOX_FLUSH_AT_STOP_S)),
            ("peers", self.transport.stop()),
            ("processors", self.registry.close()),
        ]
        # The store-error hook is process-wide: a stopped node's metrics must not go on counting
        # for other nodes of the same process (tests, embedding).
        while self._unsubscribe:
            self._unsubscribe.pop()()
        for name, step in steps:
            try:
                await step
            except Exception:  # one failed step (Redis down, say) must not skip the rest
                log.exception("node.stop_step_failed", step=name)
        log.info("node.stopped", node_id=self.settings.node_id)


def unavailable_server(exc: Unavailable) -> str:
    """Which server an Unavailable from the storage boundaries is about."""
    text = exc.message.lower()
    for server in ("mongodb", "redis"):
        if server in text:
            return server
    return "a backing server"


def node_readings(pool: WorkerPool, leadership: Leadership, elector: Elector, *, reconciler: Reconciler,
                  dispatcher: Dispatcher, verifier: Verifier) -> NodeReadings:
    """What the metrics' live gauges and counters read at each scrape."""
    return NodeReadings(
        workers_busy=lambda: pool.busy,
        workers_total=lambda: len(pool.workers),
        is_leader=lambda: leadership.is_leader,
        election_term=lambda: elector.view.term,
        leader_changes=lambda: elector.view.changes,
        member_states=lambda: [member.state for member in elector.view.members.values()],
        reconciler_requeued=lambda: reconciler.requeued,
        reaped_jobs=lambda: dispatcher.reaped_jobs,
        reaped_workers=lambda: dispatcher.reaped_workers,
        started_locally=lambda: pool.idle.started,
        peer_refusals=lambda: verifier.refused_by_reason,
    )


def peer_timeout_s(settings: Settings) -> float:
    # Long enough for a loaded peer to answer, short enough that a dead one never delays
    # the next message to it by much more than an election timeout.
    return max(0.2, min(2.0, settings.election_timeout_s))


def pool_settings(settings: Settings, registry: ProcessorRegistry) -> PoolSettings:
    return PoolSettings(
        node_id=settings.node_id,
        groups=worker_groups(served_queues(settings.queues, registry.queues()), settings.worker_count),
        capacity=1 + settings.worker_prefetch,
        lease_ttl_s=settings.job_lease_ttl_s,
        heartbeat_interval_s=settings.worker_heartbeat_interval_s,
        retry=RetryPolicy(
            policy=settings.retry_policy,
            base_delay_s=settings.retry_base_delay_s,
            max_delay_s=settings.retry_max_delay_s,
            multiplier=settings.retry_multiplier,
            jitter_factor=settings.retry_jitter_factor,
        ),
    )


def dispatch_settings(settings: Settings) -> DispatchSettings:
    return DispatchSettings(
        strategy=settings.load_balancer_strategy,
        job_lease_ms=int(settings.job_lease_ttl_s * 1000),
        worker_ttl_ms=int(settings.worker_ttl_s * 1000),
        low_priority_share=settings.low_priority_share,
        dead_letter_retention_s=settings.job_retention_s.get("failed", 0.0),
    )
