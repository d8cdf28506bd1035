"""Tracing with OpenTelemetry: optional, and off unless the standard OTEL_* variables ask for it.

Install the `tracing` extra (`pip install 'jobnode[tracing]'`) and set `OTEL_TRACES_EXPORTER`
(`otlp`, `console`) or an OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); the SDK reads the rest of its standard variables itself
(service name and resource attributes, sampler, headers, timeouts). `OTEL_SDK_DISABLED=true`
turns it off again.

One job is one trace across the cluster: the API's span of the submitting request (continuing
the client's `traceparent`, when it sends one) is the parent of `jobnode submit`, whose W3C
`traceparent` travels with the job (Redis hash and MongoDB record) to the worker that runs it,
on whichever node, where `jobnode run` continues it. `jobnode durable write` times a
submission's wait for its journaled insert and enqueue; `jobnode dispatch` is one dispatch
round of the leader (it assigns many jobs, so it stands alone with the count).

While tracing is off every helper here returns at once: the hot path pays one check.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import structlog

from jobnode import __version__

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ModuleNotFoundError:  # the extra is not installed: tracing stays off
    trace = None  # type: ignore[assignment]

log = structlog.get_logger(__name__)

INSTALL_HINT = "pip install 'jobnode[tracing]'"
_tracer: Any = None
_propagator: Any = TraceContextTextMapPropagator() if trace is not None else None


def enabled() -> bool:
    return _tracer is not None


def enable(tracer_provider: Any = None) -> None:
    """Trace with this provider (the global one when None): tests, and programs embedding a node."""
    global _tracer
    if trace is None:
        raise RuntimeError(f"OpenTelemetry is not installed: {INSTALL_HINT}")
    provider = tracer_provider or trace.get_tracer_provider()
    _tracer = provider.get_tracer("jobnode", __version__)


def disable() -> None:
    global _tracer
    _tracer = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces to be exported."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return any(environ.get(name, "").strip()
               for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


def configure_from_env(node_id: str, environ: Mapping[str, str] | None = None) -> Any:
    """Set up exporting as the OTEL_* variables say; returns the provider to shut down, or None."""
    environ = os.environ if environ is None else environ
    if not wanted(environ):
        return None
    if trace is None:
        log.warning("tracing.unavailable", reason=f"OTEL_* variables ask for traces but OpenTelemetry is not"
                    f" installed: {INSTALL_HINT}")
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    given = environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    ours = {}
    if not environ.get("OTEL_SERVICE_NAME") and "service.name=" not in given:
        ours["service.name"] = "jobnode"
    if "service.instance.id=" not in given:
        ours["service.instance.id"] = node_id
    provider = TracerProvider(resource=Resource.create(ours))
    names = [name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")]
    for name in names:
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name == "otlp":
            provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(environ)))
        elif name != "none":
            log.warning("tracing.unknown_exporter", exporter=name, known="otlp, console, none")
    trace.set_tracer_provider(provider)
    enable(provider)
    log.info("tracing.enabled", exporters=names)
    return provider


def _otlp_exporter(environ: Mapping[str, str]) -> Any:
    protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                or "http/protobuf").strip().lower()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ModuleNotFoundError:
            raise RuntimeError("OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs opentelemetry-exporter-otlp-proto-grpc;"
                               " the tracing extra brings http/protobuf") from None
        return OTLPSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def shutdown(provider: Any) -> None:
    """Flush what is still buffered (a stopping node's last spans) and stop exporting."""
    if provider is not None:
        provider.shutdown()
    disable()


@contextmanager
def span(name: str, *, parent: str | None = None, attributes: Mapping[str, Any] | None = None,
         kind: str = "internal") -> Iterator[Any]:
    """A span under `parent` (a traceparent) or, without one, under the current span; None when off."""
    if _tracer is None:
        yield None
        return
    context = _propagator.extract({"traceparent": parent}) if parent else None
    with _tracer.start_as_current_span(name, context=context, kind=_KINDS[kind],
                                       attributes=dict(attributes or {})) as current:
        yield current


@contextmanager
def server_span(method: str, route: str, headers: Mapping[str, str]) -> Iterator[Any]:
    """The span of one API request, continuing the caller's trace when its headers carry one."""
    if _tracer is None:
        yield None
        return
    context = _propagator.extract(headers)
    with _tracer.start_as_current_span(f"{method} {route}", context=context, kind=SpanKind.SERVER,
                                       attributes={"http.request.method": method, "http.route": route}) as current:
        yield current


def clock_ns() -> int:
    """A start time for `record` (the wall clock, as spans are stamped)."""
    return time.time_ns()


def record(name: str, started_ns: int, attributes: Mapping[str, Any] | None = None) -> None:
    """A finished span of its own trace, from `started_ns` to now: for work known to matter only once done."""
    if _tracer is None:
        return
    _tracer.start_span(name, context=Context(), start_time=started_ns, attributes=dict(attributes or {})).end()


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span, to carry with a job; None when off or outside a span."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def failed(current: Any, description: str) -> None:
    """Mark a span (from `span`, possibly None) as ended in error."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description))


_KINDS: dict[str, Any] = (
    {"internal": SpanKind.INTERNAL, "server": SpanKind.SERVER, "producer": SpanKind.PRODUCER,
     "consumer": SpanKind.CONSUMER}
    if trace is not None else {}
)
