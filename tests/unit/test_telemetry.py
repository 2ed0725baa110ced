"""Traces without a backend (photocraft_common.telemetry): spans go to OpenTelemetry's in-memory exporter.

What is checked: the resource and the sampler (a job's spans follow its root; a Redis, S3 or Triton call
outside any span starts no trace), the W3C traceparent round trip, spans that continue a stored context
(the scheduler's fair-share release, the worker's task, the notifier's send, the janitor's purge) whatever
span is current, traceparents kept by the job record, its tombstone and the notifier's event log,
Kafka headers through the protobuf publish path, query strings kept out of request spans, settings, and
an export to an endpoint that is down, which never raises. On the platform: tests/platform/test_tracing.py.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest
from fakeredis import FakeAsyncRedis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from faststream.kafka import TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from photocraft_common import telemetry
from photocraft_common.contracts import JobEvent, Progress, TaskDispatched, now
from photocraft_common.expiry import ExpiryIndex, job_entry
from photocraft_common.jobs import JobStore, tombstone_key
from photocraft_common.kafka import make_broker, publish
from photocraft_common.settings import LOCAL_OTLP_ENDPOINT, KafkaSettings, PlatformSettings, TracingSettings
from photocraft_janitor.janitor import job_spans, purge
from photocraft_notifier.eventlog import CHANNEL, EventLog, Logged

JOB_TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # a sampled remote context
TRACE_ID, SPAN_ID = int("4bf92f3577b34da6a3ce929d0e0e4736", 16), int("00f067aa0ba902b7", 16)


@pytest.fixture(scope="module")
def provider() -> TracerProvider:
    """The process's global SDK provider (made here if no other test made one first)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        current = trace.get_tracer_provider()
    assert isinstance(current, TracerProvider), "another tracer provider was set globally"
    return current


@pytest.fixture
def spans(provider):
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()  # takes no more spans; the provider keeps a processor that does nothing


def finished(exporter: InMemorySpanExporter, name: str):
    found = [span for span in exporter.get_finished_spans() if span.name == name]
    assert len(found) == 1, [span.name for span in exporter.get_finished_spans()]
    return found[0]


def test_a_provider_names_the_service_and_exports_in_batches():
    exporter = InMemorySpanExporter()
    provider = telemetry.make_provider("scheduler", TracingSettings(), exporter)
    with provider.get_tracer("t").start_as_current_span("work"):
        pass
    assert exporter.get_finished_spans() == ()  # batched: nothing sent yet
    assert provider.force_flush(5000)
    [span] = exporter.get_finished_spans()
    resource = span.resource.attributes
    assert resource["service.name"] == "photocraft-scheduler" and resource["service.namespace"] == "photocraft"
    assert resource["service.version"] and resource["service.instance.id"].endswith(f"-{__import__('os').getpid()}")
    provider.shutdown()


def test_calls_outside_any_span_start_no_trace_and_a_jobs_spans_follow_its_root():
    exporter = InMemorySpanExporter()
    provider = telemetry.make_provider("gateway", TracingSettings(sample_ratio=0.0), exporter)
    tracer = provider.get_tracer("t")
    tracer.start_span("redis GET", kind=SpanKind.CLIENT).end()  # a health check's call: dropped
    tracer.start_span("request", kind=SpanKind.SERVER).end()  # a new trace: 0 % sampled
    with tracer.start_as_current_span("job", context=telemetry.context_of(JOB_TRACE)):  # a sampled job's
        tracer.start_span("redis HSET", kind=SpanKind.CLIENT).end()
    provider.force_flush(5000)
    assert sorted(span.name for span in exporter.get_finished_spans()) == ["job", "redis HSET"]

    everything = telemetry.make_provider("gateway", TracingSettings(sample_ratio=1.0), exporter)
    exporter.clear()
    everything.get_tracer("t").start_span("redis GET", kind=SpanKind.CLIENT).end()
    everything.get_tracer("t").start_span("request", kind=SpanKind.SERVER).end()
    everything.force_flush(5000)
    assert [span.name for span in exporter.get_finished_spans()] == ["request"]
    provider.shutdown()
    everything.shutdown()


def test_an_export_to_an_endpoint_that_is_down_is_dropped_without_raising(caplog):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = telemetry.make_provider("gateway", TracingSettings(endpoint=f"http://127.0.0.1:{port}",
                                                                  export_timeout_s=0.5))
    started = time.monotonic()
    with provider.get_tracer("t").start_as_current_span("request"):
        pass
    provider.force_flush(3000)  # the exporter fails (connection refused), logs it and drops the batch
    provider.shutdown()
    assert time.monotonic() - started < 5
    assert any(r.name.startswith("opentelemetry.exporter") and r.levelno >= logging.ERROR
               and "Failed to export" in r.getMessage() for r in caplog.records), caplog.records


def test_traceparent_round_trip(spans):
    assert telemetry.current_traceparent() == ""
    with telemetry.tracer.start_as_current_span("upload") as span:
        context = span.get_span_context()
        version, trace_id, span_id, flags = telemetry.current_traceparent().split("-")
        assert (version, trace_id, span_id) == ("00", f"{context.trace_id:032x}", f"{context.span_id:016x}")
        assert int(flags, 16) & 1  # sampled
    parent = trace.get_current_span(telemetry.context_of(JOB_TRACE)).get_span_context()
    assert (parent.trace_id, parent.span_id, parent.is_remote) == (TRACE_ID, SPAN_ID, True)
    for bad in ("", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"):
        assert not trace.get_current_span(telemetry.context_of(bad)).get_span_context().is_valid


def test_a_continued_span_is_a_child_of_the_stored_context_and_links_to_the_current_span(spans):
    with telemetry.tracer.start_as_current_span("another job's message") as current:
        with telemetry.continued(JOB_TRACE, "dispatch"):
            assert trace.get_current_span().get_span_context().trace_id == TRACE_ID
        with telemetry.continued("", "orphan"):
            pass
        with telemetry.continued("", "nothing", orphan=False) as none:
            assert none is trace.INVALID_SPAN and trace.get_current_span() is current
    dispatch, orphan = finished(spans, "dispatch"), finished(spans, "orphan")
    here = current.get_span_context()
    assert (dispatch.context.trace_id, dispatch.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert [link.context.span_id for link in dispatch.links] == [here.span_id]
    assert orphan.parent is None and orphan.context.trace_id not in (TRACE_ID, here.trace_id)
    assert "nothing" not in [span.name for span in spans.get_finished_spans()]


def test_a_task_of_a_consumed_batch_continues_its_messages_trace(spans):
    class Record:
        topic, partition, offset, key = "photocraft.model.u2netp", 3, 42, b"job-1"
        headers = [("message-type", b"photocraft.v1.TaskDispatched"), ("traceparent", JOB_TRACE.encode())]

    with telemetry.consumed(Record()):
        pass
    span = finished(spans, "photocraft.model.u2netp handle")
    assert (span.context.trace_id, span.parent.span_id, span.kind) == (TRACE_ID, SPAN_ID, SpanKind.CONSUMER)
    assert span.attributes["messaging.kafka.message.key"] == "job-1"


async def test_a_message_published_with_a_jobs_traceparent_carries_it_in_its_headers(spans):
    broker = make_broker(KafkaSettings(), "test")
    seen: list[tuple[str, int]] = []

    @broker.subscriber("photocraft.model.u2netp")
    async def on_task(body: bytes, message: KafkaMessage) -> None:
        task = TaskDispatched.FromString(body)  # protobuf bytes, untouched by the middleware
        seen.append((task.job_id, trace.get_current_span().get_span_context().trace_id))

    task = TaskDispatched(task_id="job-1/segment/1", job_id="job-1", stage="segment", model="u2netp")
    async with TestKafkaBroker(broker):
        with telemetry.tracer.start_as_current_span("another job's message") as current:
            await publish(broker, "photocraft.model.u2netp", task, traceparent=JOB_TRACE)
            await publish(broker, "photocraft.model.u2netp", task)
    assert seen == [("job-1", TRACE_ID), ("job-1", current.get_span_context().trace_id)]
    publishes = [s for s in spans.get_finished_spans() if s.name == "photocraft.model.u2netp publish"]
    assert [s.context.trace_id for s in publishes] == [TRACE_ID, current.get_span_context().trace_id]


async def test_the_job_record_the_tombstone_and_the_event_log_keep_the_traceparent():
    redis = FakeAsyncRedis()
    jobs, log = JobStore(redis, 3600), EventLog(redis, 3600)
    await jobs.create("j1", "acme", "enhance", "{}", None, "token", "pro", "standard", traceparent=JOB_TRACE)
    await jobs.create("j2", "acme", "enhance", "{}", None, "token", "pro", "standard")
    assert (await jobs.get("j1")).traceparent == JOB_TRACE and (await jobs.get("j2")).traceparent == ""
    assert await redis.hget(tombstone_key("job", "j1"), "traceparent") == JOB_TRACE.encode()
    assert await redis.ttl(tombstone_key("job", "j1")) > 3600  # it outlives the record

    async with redis.pubsub() as feed:
        await feed.subscribe(CHANNEL)
        await feed.get_message(timeout=1)
        for n, traceparent in ((1, JOB_TRACE), (2, "")):
            progress = Progress(stage="segment", percent=n)
            event = JobEvent(event_id=f"j1:{n}", job_id="j1", tenant_id="acme", time=now(), progress=progress)
            assert await log.append(event, traceparent) == n
        live = [Logged.from_feed((await feed.get_message(timeout=1))["data"]) for _ in range(2)]
    logged = [*await log.job_events("j1", 0), *await log.tenant_events("acme", 0), *live]
    assert [item.traceparent for item in logged] == [JOB_TRACE, ""] * 3
    assert [item.event.progress.percent for item in live] == [1, 2]


async def test_the_janitors_purge_of_a_job_is_in_the_jobs_trace_and_linked_to_its_pass(spans):
    redis = FakeAsyncRedis()
    jobs, index = JobStore(redis, 3600), ExpiryIndex(redis, 3600)
    await jobs.create("j1", "acme", "enhance", "{}", None, "token", "pro", "standard", traceparent=JOB_TRACE)
    await jobs.create("j2", "acme", "enhance", "{}", None, "token", "pro", "standard")
    await redis.delete("photocraft:job:j1")  # expired in Redis before the janitor came: the tombstone remembers
    due = await index.due(time.time() + 3601)
    assert sorted(entry.member for entry in due) == [job_entry("j1"), job_entry("j2")]

    report = await purge(index, s3=None, entries=due, now=time.time() + 3601)

    assert report.jobs == 2 and await index.size() == 0
    passed, job = finished(spans, "purge"), finished(spans, "purge job")  # j2 has no trace: no span of its own
    assert (job.context.trace_id, job.parent.span_id) == (TRACE_ID, SPAN_ID)
    assert job.attributes["photocraft.job_id"] == "j1"
    assert [link.context.span_id for link in job.links] == [passed.context.span_id]
    assert passed.parent is None and passed.start_time <= job.start_time <= job.end_time <= passed.end_time
    assert await job_spans(index, []) == []


def test_request_spans_leave_the_query_string_out(spans):
    app = FastAPI()

    @app.get("/v1/jobs/{job_id}")
    async def read(job_id: str, token: str = "") -> dict:
        return {"job_id": job_id}

    @app.get("/healthz")
    async def healthz() -> dict:
        return {}

    with TestClient(telemetry.instrument_app(app)) as client:
        assert client.get("/v1/jobs/j1?token=s3cr3t").status_code == 200
        assert client.get("/healthz").status_code == 200
    [span] = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert span.attributes["http.route"] == "/v1/jobs/{job_id}"
    assert not [key for key, value in span.attributes.items() if "s3cr3t" in str(value)], dict(span.attributes)


def test_tracing_settings(monkeypatch):
    for name in ("PHOTOCRAFT_PROFILE", "PHOTOCRAFT_TRACING__ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert PlatformSettings().tracing.endpoint == LOCAL_OTLP_ENDPOINT  # the local stack's Jaeger
    monkeypatch.setenv("PHOTOCRAFT_TRACING__ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("PHOTOCRAFT_TRACING__SAMPLE_RATIO", "0.25")
    tracing = PlatformSettings().tracing
    assert (tracing.endpoint, tracing.sample_ratio, tracing.enabled) == ("http://collector:4318", 0.25, True)
    monkeypatch.setenv("PHOTOCRAFT_TRACING__SAMPLE_RATIO", "1.5")
    with pytest.raises(ValidationError, match="sample_ratio"):
        PlatformSettings()


def test_tracing_is_off_without_an_endpoint_or_when_disabled(monkeypatch):
    monkeypatch.setenv("PHOTOCRAFT_TRACING__ENDPOINT", "")  # production's default is none at all
    assert telemetry.setup_tracing("gateway", PlatformSettings()) is None
    monkeypatch.setenv("PHOTOCRAFT_TRACING__ENDPOINT", LOCAL_OTLP_ENDPOINT)
    monkeypatch.setenv("PHOTOCRAFT_TRACING__ENABLED", "false")
    assert telemetry.setup_tracing("gateway", PlatformSettings()) is None
