"""The node's Prometheus metrics: every definition, on a registry of the node's own.

Each `NodeMetrics` owns a `CollectorRegistry`, so several nodes in one process (tests,
embedding) never share or collide on a series. The registry also carries the standard
process, platform and GC collectors.

Where the numbers come from:
  - counters and histograms are fed where the fact happens: `JobService` (submitted),
    `WorkerPool` (attempt outcomes, processing and wait durations, retries) and the HTTP
    middleware (requests by route template and status);
  - gauges of live state (workers, leadership, election view, uptime) are read when
    Prometheus scrapes, through `NodeStateCollector`, from the `NodeReadings` the node's
    wiring hands over (plain callables, so this module never imports the parts it watches);
  - queue depths and the outbox backlog are cluster-wide Redis facts, sampled by the metrics
    endpoint at scrape time with one pipelined round trip (`refresh_queue_depth`), so every
    node reports the same queue: dashboards take `max` over nodes;
  - Redis and MongoDB errors are reported by the storage boundaries through
    `jobnode.core.store_errors`, which the node's wiring connects to `store_error`.

No counter or histogram exports a `_created` series: prometheus_client's are switched off
process-wide. In the text format Prometheus stores each as one more series per counter, which no
query here reads.

Label values are bounded by construction: job types are the registered processors (any
other type gets no series), statuses and states are fixed tuples, HTTP routes are route
templates (`/api/v1/jobs/{job_id}`, never a raw path) and methods outside the standard set
are counted as `other`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobnode import election

if TYPE_CHECKING:
    from jobnode.storage.redis.queue import JobQueue

disable_created_metrics()

# Jobs run from milliseconds (echo) to many minutes (JOB_TIMEOUT defaults to 5 min).
JOB_DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                          120.0, 300.0, 600.0, 1800.0)
# Waiting in the queue: near zero on an idle cluster, up to hours behind a backlog.
JOB_WAIT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                      300.0, 900.0, 3600.0)
# API requests: a read is a millisecond or two, a submit waits for a group commit.
HTTP_DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A submit's two writes: fine steps below 20 ms, where a journaled insert and a Redis script
# sit and where a slow store shows first, so the two can be told apart (docs/benchmark.md).
SUBMIT_WRITE_BUCKETS_S = (0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.0125,
                          0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# jobnode_submit_write_duration_seconds{stage}: the MongoDB insert, then the Redis enqueue.
SUBMIT_WRITE_STAGES = ("store_insert", "queue_enqueue")

# jobnode_queue_depth{state}: what each state means in Redis (see jobnode.storage.redis.queue).
QUEUE_STATES = {"pending": "ready", "processing": "processing", "delayed": "delayed", "dead": "dead_letter"}
# jobnode_jobs_completed_total{status}: how an attempt ended for good.
#   completed: the processor returned; failed: the job went to the dead-letter set
#   (permanent error or retries exhausted). An attempt that will be retried counts in
#   jobnode_job_retries_total instead.
COMPLETION_STATUSES = ("completed", "failed")
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


class NodeMetrics:
    """One node's metric objects and registry."""

    def __init__(self, job_types: Collection[str] = (), *, node_id: str = "", algorithm: str = "",
                 strategy: str = "") -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.job_types = frozenset(job_types)
        self.started_at_s = time.monotonic()  # uptime must not jump with the wall clock
        self._define_jobs()
        self._define_http()
        self.queue_depth = Gauge("jobnode_queue_depth", "Jobs in the cluster's Redis queue by state "
                                 "(cluster-wide: every node reports the same value)", ["state"],
                                 registry=self.registry)
        self.unroutable = Gauge("jobnode_jobs_unroutable", "Pending jobs that no registered worker can run: "
                                "no live node serves their queue and has their type (cluster-wide)",
                                ["queue", "type"], registry=self.registry)
        self.outbox_entries = Gauge("jobnode_outbox_entries", "Job changes in Redis waiting to be written to "
                                    "MongoDB (cluster-wide)", registry=self.registry)
        self.outbox_oldest_age = Gauge("jobnode_outbox_oldest_age_seconds", "How long the oldest change in the "
                                       "outbox has waited for MongoDB; 0 when none waits (cluster-wide)",
                                       registry=self.registry)
        self.storage_errors = Counter("jobnode_storage_errors", "Redis and MongoDB calls that failed, by store, "
                                      "operation and kind (unreachable, or refused by Redis)",
                                      ["store", "operation", "kind"], registry=self.registry)
        self.node_info = Gauge("jobnode_node_info", "Always 1; labels describe the node",
                               ["node_id", "algorithm", "strategy"], registry=self.registry)
        self.node_info.labels(node_id, algorithm, strategy).set(1)
        self._seed_series()

    def _define_jobs(self) -> None:
        r = self.registry
        self.submitted = Counter("jobnode_jobs_submitted", "Jobs accepted by this node's API", ["type"],
                                 registry=r)
        self.completed = Counter("jobnode_jobs_completed", "Jobs this node's workers finished for good, "
                                 "by outcome (completed, failed = dead-lettered)", ["type", "status"], registry=r)
        self.retries = Counter("jobnode_job_retries", "Failed attempts on this node that will be retried",
                               ["type"], registry=r)
        self.processing = Histogram("jobnode_job_processing_duration_seconds",
                                    "Time a processor ran for one attempt, whatever its outcome", ["type"],
                                    buckets=JOB_DURATION_BUCKETS_S, registry=r)
        self.wait = Histogram("jobnode_job_wait_duration_seconds",
                              "From submission (or scheduled time) to the first attempt's start",
                              buckets=JOB_WAIT_BUCKETS_S, registry=r)
        self.submit_write = Histogram("jobnode_submit_write_duration_seconds",
                                      "One submit batch's write, by stage: the MongoDB insert, then the Redis "
                                      "enqueue (a batch holds the submissions that arrived together)", ["stage"],
                                      buckets=SUBMIT_WRITE_BUCKETS_S, registry=r)

    def _define_http(self) -> None:
        self.http_requests = Counter("jobnode_http_requests", "API requests by route template and status",
                                     ["method", "route", "status"], registry=self.registry)
        self.http_duration = Histogram("jobnode_http_request_duration_seconds",
                                       "API request latency by route template", ["method", "route"],
                                       buckets=HTTP_DURATION_BUCKETS_S, registry=self.registry)

    def _seed_series(self) -> None:
        # Series that exist from the start at 0 make rate() and ratios work before the first event.
        # The children are kept: resolving labels costs more than the increment on the hot path.
        self._by_type = {
            job_type: _TypeSeries(
                submitted=self.submitted.labels(job_type),
                retries=self.retries.labels(job_type),
                processing=self.processing.labels(job_type),
                completed={status: self.completed.labels(job_type, status) for status in COMPLETION_STATUSES},
            )
            for job_type in self.job_types
        }
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._submit_write = {stage: self.submit_write.labels(stage) for stage in SUBMIT_WRITE_STAGES}

    # -- facts reported by the node's parts ------------------------------------------------

    def job_submitted(self, job_type: str, count: int = 1) -> None:
        series = self._by_type.get(job_type)
        if series is not None:
            series.submitted.inc(count)

    def submit_written(self, stage: str, duration_s: float) -> None:
        """One submit batch's `store_insert` or `queue_enqueue` took `duration_s`."""
        self._submit_write[stage].observe(duration_s)

    def attempt_started(self, wait_s: float | None) -> None:
        """A job started; `wait_s` is given for first attempts only (submit→start)."""
        if wait_s is not None and wait_s >= 0:
            self.wait.observe(wait_s)

    def attempt_finished(self, job_type: str, outcome: str, duration_s: float) -> None:
        """One attempt ended: `completed`, `failed` (dead-lettered) or `retry`."""
        series = self._by_type.get(job_type)
        if series is None:
            return
        series.processing.observe(duration_s)
        if outcome == "retry":
            series.retries.inc()
        elif outcome in series.completed:
            series.completed[outcome].inc()

    def http_request(self, method: str, route: str, status: int, duration_s: float) -> None:
        method = method if method in HTTP_METHODS else "other"
        key = (method, route, status)
        children = self._http.get(key)
        if children is None:  # bounded: methods x route templates x statuses
            children = (self.http_requests.labels(method, route, str(status)),
                        self.http_duration.labels(method, route))
            self._http[key] = children
        children[0].inc()
        children[1].observe(duration_s)

    def watch(self, readings: NodeReadings) -> None:
        """Report the node's live state, read through `readings`, at every scrape."""
        self.registry.register(NodeStateCollector(self.started_at_s, readings))

    def store_error(self, store: str, operation: str, kind: str) -> None:
        """A Redis or MongoDB call failed (the listener of jobnode.core.store_errors)."""
        self.storage_errors.labels(store, operation, kind).inc()

    async def refresh_queue_depth(self, queue: JobQueue) -> None:
        """Sample the queue's depths, its unroutable jobs and the outbox; on failure, report none."""
        try:
            routes = await queue.routes()
            depths = await queue.depths(routes)
        except BaseException:  # a timeout cancels the call: that is a failure too
            # A stale depth would look like a healthy queue; no series says "unknown" honestly.
            self.queue_depth.clear()
            self.unroutable.clear()
            self.outbox_entries.set(float("nan"))
            self.outbox_oldest_age.set(float("nan"))
            raise
        for state, key in QUEUE_STATES.items():
            self.queue_depth.labels(state).set(depths[key])
        self.outbox_entries.set(depths["outbox"])
        self.outbox_oldest_age.set(depths["outbox_oldest_age_ms"] / 1000)
        self.unroutable.clear()  # a route that became runnable must not keep its last count
        for route in routes:
            if not route.routable:
                self.unroutable.labels(route.queue, route.type).set(route.ready)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class _TypeSeries:
    """One job type's series, resolved once."""

    submitted: Any
    retries: Any
    processing: Any
    completed: dict[str, Any]


@dataclass(frozen=True)
class NodeReadings:
    """How the gauges read the node's live state; each callable is called at every scrape."""

    workers_busy: Callable[[], int]
    workers_total: Callable[[], int]
    is_leader: Callable[[], bool]
    election_term: Callable[[], int]
    leader_changes: Callable[[], int]  # changes of the leader in this node's view, to none included
    member_states: Callable[[], Iterable[str]]  # one state per member this node knows, itself included
    reconciler_requeued: Callable[[], int] = lambda: 0  # stranded jobs this node queued again as leader
    reaped_jobs: Callable[[], int] = lambda: 0  # jobs this node took back from dead workers and lapsed leases
    reaped_workers: Callable[[], int] = lambda: 0  # workers this node found dead and unregistered
    started_locally: Callable[[], int] = lambda: 0  # jobs a submit to this node started on its own idle worker
    peer_refusals: Callable[[], Mapping[str, int]] = dict  # refused peer requests by reason


class NodeStateCollector(Collector):
    """Gauges read from the node when Prometheus scrapes, so they are never stale."""

    def __init__(self, started_at_s: float, readings: NodeReadings) -> None:
        self.started_at_s = started_at_s
        self.readings = readings

    def collect(self) -> Iterator[Metric]:
        r = self.readings
        yield _gauge("jobnode_node_uptime_seconds", "Seconds since this node started",
                     time.monotonic() - self.started_at_s)
        yield _gauge("jobnode_workers_active", "Workers on this node running a job now", r.workers_busy())
        yield _gauge("jobnode_workers", "Workers on this node", r.workers_total())
        yield _gauge("jobnode_is_leader", "1 while this node holds the fenced leader lease (it dispatches)",
                     1 if r.is_leader() else 0)
        yield _gauge("jobnode_election_term", "The election term or epoch this node last saw", r.election_term())
        changes = CounterMetricFamily("jobnode_election_leader_changes",
                                      "Changes of the leader in this node's view (including to none)")
        changes.add_metric([], r.leader_changes())
        yield changes
        members = GaugeMetricFamily("jobnode_cluster_members", "Cluster members by state in this node's view "
                                    "(itself included)", labels=["state"])
        counts = dict.fromkeys(election.MEMBER_STATES, 0)
        for state in r.member_states():
            if state in counts:
                counts[state] += 1
        for state, count in counts.items():
            members.add_metric([state], count)
        yield members
        yield _counter("jobnode_reconciler_requeued", "Stranded jobs (in MongoDB, not in Redis) this node "
                       "queued again while it led", r.reconciler_requeued())
        yield _counter("jobnode_jobs_reaped", "Jobs this node took back from dead workers or lapsed leases "
                       "while it led", r.reaped_jobs())
        yield _counter("jobnode_workers_reaped", "Silent workers this node unregistered while it led",
                       r.reaped_workers())
        yield _counter("jobnode_jobs_started_locally", "Jobs a submission to this node started at once on one "
                       "of its idle workers, without a dispatch round (LOCAL_START)", r.started_locally())
        refused = CounterMetricFamily("jobnode_peer_messages_refused", "Peer requests this node refused, "
                                      "by reason", labels=["reason"])
        for reason, count in sorted(r.peer_refusals().items()):
            refused.add_metric([reason], count)
        yield refused


def _gauge(name: str, documentation: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
