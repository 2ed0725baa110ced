"""OpenTelemetry traces: one trace per job, across every service, exported over OTLP (Jaeger locally).

``setup_tracing(service, settings)`` runs once per process, before its app is built: it sets the global
tracer provider (the OpenTelemetry SDK's; ``opentelemetry.trace.get_current_span()`` then names the
current trace anywhere) and instruments Redis (redis-py), S3 (botocore) and the Triton gRPC calls
(grpc.aio, ModelInfer and ModelStreamInfer only); ``instrument_app`` does the same for a FastAPI app, and
photocraft_common.kafka's brokers carry FastStream's Kafka middleware, which puts the W3C ``traceparent``
in every message's headers and continues from it when the message is consumed.

Where a job's work leaves Kafka's headers, its context travels as a W3C ``traceparent`` string: the job
record keeps the one of its intake (jobs.JobStore.create), so that each stage released from the
scheduler's fair-share queue in Redis is published as part of the job's trace (kafka.publish
``traceparent=``); the notifier's event log keeps each event's, for the WebSocket send; the tombstone
keeps the job's, for the storage-janitor's purge a day later (a child of the job's context, linked to
the janitor's pass). See docs/observability.md.

Exporting never blocks a service and never fails one: spans are batched in memory (BatchSpanProcessor,
2048 at most; more are dropped), sent from a thread, and a failed export (the endpoint down) is logged
by the exporter and dropped. Sampling: a job's spans follow its root's decision (``sample_ratio`` of
the roots); a call to Redis, S3 or Triton made outside any span (health checks, periodic reports) starts
no trace of its own.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .settings import PlatformSettings, TracingSettings

__all__ = ["NoRootClients", "SpanKind", "attached", "consumed", "context_of", "continued", "current_traceparent",
           "instrument_app", "make_provider", "record_traceparent", "setup_tracing", "tracer"]

log = logging.getLogger("photocraft.telemetry")

NAMESPACE = "photocraft"  # service.namespace; service.name is "photocraft-<service>"
TRACEPARENT = "traceparent"  # the W3C Trace Context header (and field) name
# Routes whose requests are not traced: probes and scrapes, every few seconds.
UNTRACED_ROUTES = "/healthz,/readyz,/metrics"
# The Triton gRPC methods traced (each call's span names its model); others (health, repository) are not.
TRITON_METHODS = ("ModelInfer", "ModelStreamInfer")
_PROPAGATOR = TraceContextTextMapPropagator()

tracer = trace.get_tracer("photocraft")  # follows the global provider once setup_tracing set it


class NoRootClients(Sampler):
    """Drops a CLIENT span that would start a trace (a Redis, S3 or Triton call outside any operation:
    health checks, periodic reports); asks ``root`` about every other root span."""

    def __init__(self, root: Sampler) -> None:
        self._root = root

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None,
                      trace_state=None) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._root.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"NoRootClients{{{self._root.get_description()}}}"


def _version() -> str:
    try:
        return version("photocraft-common")
    except PackageNotFoundError:
        return "unknown"


def make_provider(service: str, settings: TracingSettings, exporter: SpanExporter | None = None) -> TracerProvider:
    """A tracer provider for ``service`` (e.g. "gateway"; the resource's service.name is "photocraft-gateway",
    with service.namespace, service.version and service.instance.id = host-pid), sampling as the module says,
    whose spans go in batches to ``exporter`` (default: OTLP/HTTP protobuf to ``settings.endpoint``/v1/traces,
    ``settings.export_timeout_s`` per request). Raises ValueError when neither is given."""
    if exporter is None:
        if not settings.endpoint:
            raise ValueError("no OTLP endpoint: set PHOTOCRAFT_TRACING__ENDPOINT")
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"{settings.endpoint.rstrip('/')}/v1/traces",
                                    timeout=settings.export_timeout_s)
    resource = Resource.create({"service.name": f"{NAMESPACE}-{service}", "service.namespace": NAMESPACE,
                                "service.version": _version(),
                                "service.instance.id": f"{socket.gethostname()}-{os.getpid()}"})
    sampler = ParentBased(root=NoRootClients(TraceIdRatioBased(settings.sample_ratio)))
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=settings.export_timeout_s * 1000))
    return provider


def setup_tracing(service: str, settings: PlatformSettings) -> TracerProvider | None:
    """Trace this process as ``service`` (see make_provider) and instrument its clients; once per process,
    before its app and clients are built. Returns the provider (its spans are flushed at exit), or None
    when tracing is off (``settings.tracing.enabled`` false, or no endpoint: production's default), where
    spans are not recorded but the trace context of incoming messages still travels on."""
    tracing = settings.tracing
    if not tracing.enabled or not tracing.endpoint:
        log.info("tracing off (%s)", "PHOTOCRAFT_TRACING__ENABLED=false" if not tracing.enabled
                 else "no PHOTOCRAFT_TRACING__ENDPOINT")
        return None
    provider = make_provider(service, tracing)
    trace.set_tracer_provider(provider)
    _instrument_clients(provider)
    log.info("tracing to %s (sampling %.0f%% of new traces)", tracing.endpoint, tracing.sample_ratio * 100)
    return provider


def _instrument_clients(provider: TracerProvider) -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient, filters
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    BotocoreInstrumentor().instrument(tracer_provider=provider)
    methods = filters.any_of(*(filters.method_name(name) for name in TRITON_METHODS))
    GrpcAioInstrumentorClient(filter_=methods).instrument(tracer_provider=provider, request_hook=_name_model)


def _name_model(span: Span, request: Any) -> None:
    """Name a Triton call's span after its model (a ModelInferRequest's ``model_name``)."""
    model = getattr(request, "model_name", "")
    if model and span.is_recording():
        span.set_attribute("triton.model_name", model)
        span.update_name(f"triton {model}")


def instrument_app(app: FastAPI) -> FastAPI:
    """Trace ``app``'s requests (not UNTRACED_ROUTES; a WebSocket is one span while it is open), their
    query strings left out of the span (they may hold tokens). Returns ``app``."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=UNTRACED_ROUTES, server_request_hook=_no_query,
                                       exclude_spans=["receive", "send"])
    return app


def _no_query(span: Span, scope: Mapping[str, Any]) -> None:
    """Drop the query string from the request's URL attributes (``?token=...`` must not reach the traces)."""
    if not span.is_recording() or not scope.get("query_string"):
        return
    attributes = getattr(span, "attributes", None) or {}
    for key in ("http.url", "url.full", "http.target"):
        if isinstance(value := attributes.get(key), str):
            span.set_attribute(key, value.split("?", 1)[0])
    if "url.query" in attributes:
        span.set_attribute("url.query", "")


def current_traceparent() -> str:
    """The W3C traceparent of the current span (``00-<trace id>-<span id>-<flags>``); "" when none."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT, "")


def context_of(traceparent: str) -> Context:
    """The context of a W3C traceparent; an empty one (a new trace) when it is empty or malformed."""
    return _PROPAGATOR.extract({TRACEPARENT: traceparent}) if traceparent else Context()


def record_traceparent(record: Any) -> str:
    """The traceparent header of an aiokafka ConsumerRecord; "" when it has none."""
    for name, value in record.headers or ():
        if name == TRACEPARENT:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""


@contextmanager
def continued(traceparent: str, name: str, *, kind: SpanKind = SpanKind.INTERNAL, links: Sequence[Link] = (),
              attributes: Mapping[str, Any] | None = None, orphan: bool = True) -> Iterator[Span]:
    """A span named ``name``, current while the block runs, that continues the trace of ``traceparent``
    (its child), whatever span is current now (which it links to, when there is one). When ``traceparent``
    is empty or malformed the span starts a new trace, or with ``orphan=False`` no span is made at all and
    the block runs in the current context."""
    parent = context_of(traceparent)
    if not trace.get_current_span(parent).get_span_context().is_valid and not orphan:
        yield trace.INVALID_SPAN
        return
    here = trace.get_current_span().get_span_context()
    links = [*links, Link(here)] if here.is_valid else list(links)
    with tracer.start_as_current_span(name, context=parent, kind=kind, links=links, attributes=attributes) as span:
        yield span


def consumed(record: Any) -> AbstractContextManager[Span]:
    """``continued`` from a consumed aiokafka ConsumerRecord's traceparent header: a CONSUMER span
    ``<topic> handle`` with the record's topic, partition, offset and key (a job id); for the messages of a
    batch, which FastStream's middleware traces as one span of a new trace (linked to, from here)."""
    attributes = {"messaging.system": "kafka", "messaging.destination.name": record.topic,
                  "messaging.kafka.destination.partition": record.partition,
                  "messaging.kafka.message.offset": record.offset,
                  "messaging.kafka.message.key": (record.key or b"").decode(errors="replace")}
    return continued(record_traceparent(record), f"{record.topic} handle", kind=SpanKind.CONSUMER,
                     attributes=attributes)


@contextmanager
def attached(traceparent: str) -> Iterator[None]:
    """Run the block in the context of ``traceparent`` (spans started in it are its children); in an empty
    context (a new trace) when it is empty or malformed, never in the current span's."""
    token = otel_context.attach(context_of(traceparent))
    try:
        yield
    finally:
        otel_context.detach(token)
