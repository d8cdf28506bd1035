"""Tracing: one job's spans form one trace from the API on one node to the worker on another."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from jobnode.observability import tracing
from tests.harness import start_node  # noqa: F401  (fixture)
from tests.waiting import wait_until

CLIENT_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN_ID = "b7ad6b7169203331"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_a_job_s_trace_runs_from_the_api_on_one_node_to_the_worker_on_another(start_node, spans, mongo_db):
    api_node = await start_node(NODE_ID="node-1", WORKER_COUNT="0")
    await start_node(NODE_ID="node-2", WORKER_COUNT="2")
    traceparent = f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"

    response = await api_node.post("/api/v1/jobs", json={"type": "echo", "payload": {"n": 1}},
                                   headers={"traceparent": traceparent})
    assert response.status == 201
    job_id = (await response.json())["id"]

    runs = await wait_until(lambda: [s for s in named(spans, "jobnode run")
                                     if s.attributes["jobnode.job.id"] == job_id],
                            timeout_s=20, message="the job's run span never ended")
    (request,) = named(spans, "POST /api/v1/jobs")
    (submit,) = named(spans, "jobnode submit")
    (durable,) = named(spans, "jobnode durable write")
    (run,) = runs
    trace_id = int(CLIENT_TRACE_ID, 16)
    stored = await mongo_db.jobs.find_one({"_id": job_id})
    assert stored["trace_context"] == f"00-{CLIENT_TRACE_ID}-{submit.context.span_id:016x}-01"
    # One trace, continuing the client's: client -> request -> submit -> durable write, and the run.
    assert {span.context.trace_id for span in (request, submit, durable, run)} == {trace_id}
    assert request.kind == SpanKind.SERVER and request.parent.span_id == int(CLIENT_SPAN_ID, 16)
    assert request.attributes["http.route"] == "/api/v1/jobs" and request.attributes["http.response.status_code"] == 201
    assert submit.parent.span_id == request.context.span_id and submit.attributes["jobnode.job.id"] == job_id
    assert durable.parent.span_id == submit.context.span_id
    # The worker ran it on the other node, in the submission's trace.
    assert run.parent.span_id == submit.context.span_id
    assert run.attributes["jobnode.node"] == "node-2" and run.attributes["jobnode.outcome"] == "completed"
    assert run.start_time >= durable.end_time  # queued only once durable
    # The leader's dispatch round that assigned it is a trace of its own.
    assert any(span.attributes["jobnode.assigned"] >= 1 for span in named(spans, "jobnode dispatch"))


async def test_a_failed_attempt_marks_its_run_span_as_an_error(start_node, spans):
    from opentelemetry.trace import StatusCode

    from jobnode.processors.registry import PermanentError
    from tests.harness import registry_with

    async def broken(job):
        raise PermanentError("never works")

    client = await start_node(registry_with(broken=broken))
    job = await (await client.post("/api/v1/jobs", json={"type": "broken"})).json()
    (run,) = await wait_until(
        lambda: [s for s in named(spans, "jobnode run") if s.attributes["jobnode.job.id"] == job["id"]],
        timeout_s=20, message="no run span")
    assert run.attributes["jobnode.outcome"] == "failed" and run.status.status_code == StatusCode.ERROR
    assert "never works" in run.status.description


async def test_with_tracing_off_no_job_carries_a_trace_context(start_node, mongo_db, redis_client, key_prefix):
    assert not tracing.enabled()
    client = await start_node(WORKER_COUNT="0")
    job = await (await client.post("/api/v1/jobs", json={"type": "echo"},
                                   headers={"traceparent": f"00-{CLIENT_TRACE_ID}-{CLIENT_SPAN_ID}-01"})).json()
    assert (await mongo_db.jobs.find_one({"_id": job["id"]}))["trace_context"] is None
    assert await redis_client.hget(f"{key_prefix}:job:{job['id']}", "tctx") in (None, b"")


@pytest.mark.parametrize("environ, expected", [
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}, False),
])
def test_the_standard_otel_variables_decide_whether_to_trace(environ, expected):
    assert tracing.wanted(environ) is expected


def test_configured_from_the_environment_it_names_the_service_and_the_node(monkeypatch):
    provider = tracing.configure_from_env("node-7", {"OTEL_TRACES_EXPORTER": "console"})
    try:
        assert tracing.enabled()
        attributes = provider.resource.attributes
        assert attributes["service.name"] == "jobnode" and attributes["service.instance.id"] == "node-7"
    finally:
        tracing.shutdown(provider)
    assert not tracing.enabled()
    # The operator's own name wins over jobnode's default.
    monkeypatch.setenv("OTEL_SERVICE_NAME", "jobs-eu")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    provider = tracing.configure_from_env("node-7")
    try:
        assert provider.resource.attributes["service.name"] == "jobs-eu"
    finally:
        tracing.shutdown(provider)
