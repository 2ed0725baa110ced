"""Prometheus metrics shared by every service, and the ways each serves ``/metrics``.

Every service exposes the default registry of ``prometheus_client`` in the text format at ``/metrics``,
never on a public port: the aiohttp ``HealthServer`` (scheduler, storage-janitor, gpu-inference) serves
``aiohttp_handler``; the gateway and notifier, whose public apps answer 404 there, run ``server`` on a
port of their own (``PHOTOCRAFT_METRICS_HOST``:``PHOTOCRAFT_METRICS_PORT``) and ``instrument`` their
FastAPI apps. Names follow Prometheus' conventions
(``photocraft_`` prefix, base units: seconds, ``_total`` for counters); the list is docs/observability.md.

Shared here:

- ``photocraft_kafka_hop_seconds{topic}``: from a message's Kafka timestamp (our topics stamp the
  broker's append time, ``LogAppendTime``: topics.py) to its consumer receiving it, observed by
  ``KafkaHopMiddleware`` on every subscriber; the producer's own wait for the broker is not in it;
- ``photocraft_kafka_consumer_lag_messages{group, topic}``: messages not yet committed by this
  process's consumers, summed over the partitions assigned to it (``lag_refresher``; refresh it with
  ``background.every``);
- ``photocraft_jobs_submitted_total{operation, tier}`` (intake.Intake: the gateway's, the scheduler's for
  partners) and ``photocraft_jobs_finished_total{operation, outcome}`` (the scheduler: completed and failed,
  the gateway: cancelled);
- ``photocraft_http_requests_total{route, method, status}`` and
  ``photocraft_http_request_duration_seconds{route, method}`` of a FastAPI app (``instrument``).

Partner topics (one per tenant) are labelled by their template (``topic_label``), so that no label grows
with the number of tenants.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from faststream import BaseMiddleware
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.aiohttp import make_aiohttp_handler

from .topics import PARTNER_EVENTS, PARTNER_REQUESTS, partner_tenant

log = logging.getLogger("photocraft.metrics")

LAG_INTERVAL_S = 15.0  # between refreshes of the consumer lag (lag_refresher)
# Latency buckets (seconds) for hops and short steps: 1 ms to 1 min.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

HOP_SECONDS = Histogram("photocraft_kafka_hop_seconds",
                        "Seconds from a message's Kafka timestamp (its append by the broker) to its consumer "
                        "receiving it",
                        ["topic"], buckets=LATENCY_BUCKETS)
CONSUMER_LAG = Gauge("photocraft_kafka_consumer_lag_messages",
                     "Messages after the committed offset of this process's consumer group, over its partitions",
                     ["group", "topic"])
JOBS_SUBMITTED_TOTAL = Counter("photocraft_jobs_submitted_total", "Jobs taken in (recorded and handed to Kafka)",
                         ["operation", "tier"])
JOBS_FINISHED_TOTAL = Counter("photocraft_jobs_finished_total", "Jobs ended: outcome completed, failed or cancelled",
                        ["operation", "outcome"])
HTTP_REQUESTS = Counter("photocraft_http_requests_total", "HTTP requests answered, by route template",
                        ["route", "method", "status"])
HTTP_SECONDS = Histogram("photocraft_http_request_duration_seconds",
                         "Seconds from an HTTP request's arrival to its response's end", ["route", "method"],
                         buckets=LATENCY_BUCKETS)

aiohttp_handler = make_aiohttp_handler()  # GET /metrics of an aiohttp app (health.HealthServer)


def topic_label(topic: str) -> str:
    """``topic`` as a label: a partner's topic becomes its template (``photocraft.partner.{tenant}.requests``)."""
    if partner_tenant(topic) is None:
        return topic
    return PARTNER_REQUESTS if topic.endswith(".requests") else PARTNER_EVENTS


def hop_seconds(timestamp_ms: int, now_s: float) -> float:
    """Seconds from a Kafka record's ``timestamp_ms`` (Unix ms) to ``now_s`` (Unix s); 0 when the clocks
    disagree (a timestamp in the future: the broker's clock runs ahead of the consumer's)."""
    return max(0.0, now_s - timestamp_ms / 1000)


def observe_hop(record, now_s: float | None = None) -> None:
    """Observe the hop of one aiokafka ``ConsumerRecord`` (its ``topic`` and ``timestamp``, Unix ms)."""
    if record.timestamp is not None and record.timestamp >= 0:
        HOP_SECONDS.labels(topic_label(record.topic)).observe(
            hop_seconds(record.timestamp, time.time() if now_s is None else now_s))


class KafkaHopMiddleware(BaseMiddleware):
    """A FastStream middleware (``KafkaBroker(middlewares=...)``) that observes the hop of every consumed
    record, each record of a batch too, before its handler runs."""

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        raw = msg.raw_message
        for record in raw if isinstance(raw, tuple | list) else (raw,):
            observe_hop(record)
        return await call_next(msg)


def lag_by_topic(rows: Iterable[tuple[str, str, int | None, int | None]]) -> dict[tuple[str, str], int]:
    """Lag per (group, topic label) from ``(group, topic, high-water mark, committed offset)`` per partition.

    A partition whose high-water mark is unknown yet (no fetch answered) is left out; one with no committed
    offset counts from 0 (its group starts from the earliest offset: subscriber_options). Never negative.
    """
    lag: dict[tuple[str, str], int] = {}
    for group, topic, highwater, committed in rows:
        if highwater is None:
            continue
        key = (group, topic_label(topic))
        lag[key] = lag.get(key, 0) + max(0, highwater - (committed or 0))
    return lag


async def consumer_offsets(broker) -> list[tuple[str, str, int | None, int | None]]:
    """``(group, topic, high-water mark, committed offset)`` of each partition assigned to the started
    consumers of a FastStream ``broker``'s subscribers (their own aiokafka consumers: nothing is asked of
    other members of the group). The committed offsets come from the consumer's cache of its group's."""
    rows = []
    for subscriber in broker.subscribers:
        consumer = getattr(subscriber, "consumer", None)
        if consumer is None:  # not started, or stopped
            continue
        partitions = sorted(consumer.assignment())
        committed = await asyncio.gather(*(consumer.committed(tp) for tp in partitions))
        rows += [(subscriber.group_id or "", tp.topic, consumer.highwater(tp), offset)
                 for tp, offset in zip(partitions, committed, strict=True)]
    return rows


def lag_refresher(broker) -> Callable[[], Awaitable[None]]:
    """One refresh of ``photocraft_kafka_consumer_lag_messages`` from ``broker``'s consumers; the gauge
    then holds exactly the (group, topic) pairs this process consumes now."""
    async def refresh() -> None:
        lag = lag_by_topic(await consumer_offsets(broker))
        CONSUMER_LAG.clear()  # partitions moved to another replica leave no stale value
        for (group, topic), value in lag.items():
            CONSUMER_LAG.labels(group, topic).set(value)
    return refresh


def observe_request(info) -> None:
    """Count one request (a prometheus-fastapi-instrumentator ``Info``: ``modified_handler`` is the route
    template, or ``none`` for a path no route matched)."""
    HTTP_REQUESTS.labels(info.modified_handler, info.method, info.modified_status).inc()
    HTTP_SECONDS.labels(info.modified_handler, info.method).observe(info.modified_duration)


def instrument(app) -> None:
    """Count a FastAPI ``app``'s HTTP requests (WebSockets are not requests here), ``/metrics`` too: the app
    does not serve it (``server`` does), so there it is a 404 of no route, labelled ``none``. Call before
    the app starts."""
    from prometheus_fastapi_instrumentator import Instrumentator  # FastAPI services only

    Instrumentator(should_group_status_codes=False).add(observe_request).instrument(app)


@asynccontextmanager
async def server(host: str, port: int) -> AsyncIterator[int | None]:
    """Serve ``GET /metrics`` (the default registry, Prometheus' text format) alone on ``host:port`` with
    aiohttp in the running event loop while inside; every other path is 404. Yields the port; ``port`` 0:
    no server (metrics off), yields None. Raises OSError when the address is taken."""
    if not port:
        yield None
        return
    app = web.Application()
    app.router.add_get("/metrics", aiohttp_handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("metrics on http://%s:%d/metrics", host, port)
        yield port
    finally:
        await runner.cleanup()
