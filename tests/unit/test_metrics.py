"""Prometheus metrics, read back from prometheus_client's registry: the shared ones (photocraft_common.metrics:
hops, consumer lag, HTTP requests, jobs) and each service's own. Counters are global to the process, so
each test compares before and after."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace
from types import SimpleNamespace

import httpx
import pytest
from aiokafka import TopicPartition
from fakeredis import FakeAsyncRedis, FakeServer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker, TestKafkaBroker
from prometheus_client import REGISTRY

from photocraft_common import contracts as pb
from photocraft_common import metrics
from photocraft_common.batches import BatchStore
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import JobStore
from photocraft_common.kafka import make_broker
from photocraft_common.quotas import Quotas
from photocraft_common.settings import KafkaSettings
from photocraft_common.topics import JOBS_SUBMITTED, TASK_RESULTS, model_topic
from photocraft_gateway.app import create_app
from photocraft_gateway.settings import GatewaySettings
from photocraft_janitor import metrics as janitor_metrics
from photocraft_janitor.janitor import PassReport, SweepReport
from photocraft_notifier.hub import Hub
from photocraft_scheduler import metrics as scheduler_metrics
from photocraft_scheduler.endings import Endings
from photocraft_scheduler.plan import Fail
from photocraft_scheduler.stages import StageStore

from .test_gateway_routes import KEYRING, Gateway
from .test_plan import PHOTO, record
from .test_topics import record as consumer_record


def value(name: str, **labels: str) -> float:
    """A sample's value now; 0 for one never observed."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_partner_topics_are_labelled_by_their_template():
    assert metrics.topic_label("photocraft.partner.t_8a2f.requests") == "photocraft.partner.{tenant}.requests"
    assert metrics.topic_label("photocraft.partner.t_8a2f.events") == "photocraft.partner.{tenant}.events"
    assert metrics.topic_label(JOBS_SUBMITTED) == JOBS_SUBMITTED
    assert metrics.topic_label(model_topic("u2netp")) == model_topic("u2netp")


def test_hop_is_the_time_since_the_records_timestamp_and_never_negative():
    assert metrics.hop_seconds(1_700_000_000_000, 1_700_000_000.25) == pytest.approx(0.25)
    assert metrics.hop_seconds(1_700_000_001_000, 1_700_000_000.0) == 0.0  # the broker's clock runs ahead


async def test_the_hop_middleware_observes_every_record_of_a_message_or_a_batch():
    before = value("photocraft_kafka_hop_seconds_count", topic=JOBS_SUBMITTED)
    buckets = {le: value("photocraft_kafka_hop_seconds_bucket", topic=JOBS_SUBMITTED, le=le) for le in ("0.01", "5.0")}
    fresh = replace(consumer_record(b"x"), timestamp=int(time.time() * 1000) - 20)  # appended 20 ms ago
    handled = []

    async def call_next(msg):
        handled.append(msg)
        return "done"

    middleware = metrics.KafkaHopMiddleware(None, context=None)
    assert await middleware.consume_scope(call_next, SimpleNamespace(raw_message=fresh)) == "done"
    await middleware.consume_scope(call_next, SimpleNamespace(raw_message=(fresh, fresh)))  # a batch
    assert len(handled) == 2
    assert value("photocraft_kafka_hop_seconds_count", topic=JOBS_SUBMITTED) == before + 3
    assert value("photocraft_kafka_hop_seconds_bucket", topic=JOBS_SUBMITTED, le="0.01") == buckets["0.01"]
    assert value("photocraft_kafka_hop_seconds_bucket", topic=JOBS_SUBMITTED, le="5.0") == buckets["5.0"] + 3


async def test_every_broker_measures_the_hop_of_what_it_consumes():
    broker = make_broker(KafkaSettings(), "test")
    got = asyncio.Event()

    @broker.subscriber(TASK_RESULTS, group_id="g")
    async def handle(body: bytes) -> None:
        got.set()

    before = value("photocraft_kafka_hop_seconds_count", topic=TASK_RESULTS)
    async with TestKafkaBroker(broker):
        await broker.publish(b"result", TASK_RESULTS, key=b"job-1")
        await asyncio.wait_for(got.wait(), 5)
    assert value("photocraft_kafka_hop_seconds_count", topic=TASK_RESULTS) == before + 1


def test_lag_sums_the_partitions_of_each_group_and_topic():
    rows = [("sched", JOBS_SUBMITTED, 120, 100), ("sched", JOBS_SUBMITTED, 7, 7),
            ("sched", TASK_RESULTS, 5, None),  # nothing committed yet: all of it is behind
            ("sched", TASK_RESULTS, None, 3),  # no fetch answered yet: unknown, left out
            ("partners", "photocraft.partner.a.requests", 4, 1), ("partners", "photocraft.partner.b.requests", 2, 0),
            ("sched", "photocraft.jobs.cancelled", 10, 12)]  # committed past a stale high-water mark
    assert metrics.lag_by_topic(rows) == {
        ("sched", JOBS_SUBMITTED): 20, ("sched", TASK_RESULTS): 5,
        ("partners", "photocraft.partner.{tenant}.requests"): 5, ("sched", "photocraft.jobs.cancelled"): 0}


class FakeConsumer:
    """The parts of aiokafka's AIOKafkaConsumer that lag_refresher reads."""

    def __init__(self, offsets: dict[TopicPartition, tuple[int, int]]) -> None:
        self.offsets = offsets  # partition -> (high-water mark, committed)

    def assignment(self) -> set[TopicPartition]:
        return set(self.offsets)

    def highwater(self, tp: TopicPartition) -> int:
        return self.offsets[tp][0]

    async def committed(self, tp: TopicPartition) -> int:
        return self.offsets[tp][1]


async def test_the_lag_gauge_holds_what_this_process_consumes_now():
    consumer = FakeConsumer({TopicPartition(JOBS_SUBMITTED, 0): (50, 40), TopicPartition(JOBS_SUBMITTED, 1): (9, 4)})
    broker = SimpleNamespace(subscribers=[SimpleNamespace(group_id="lag-test", consumer=consumer),
                                          SimpleNamespace(group_id="stopped", consumer=None)])
    refresh = metrics.lag_refresher(broker)
    await refresh()
    assert value("photocraft_kafka_consumer_lag_messages", group="lag-test", topic=JOBS_SUBMITTED) == 15
    consumer.offsets = {TopicPartition(TASK_RESULTS, 3): (3, 1)}  # a rebalance moved the partitions
    await refresh()
    assert REGISTRY.get_sample_value("photocraft_kafka_consumer_lag_messages",
                                     {"group": "lag-test", "topic": JOBS_SUBMITTED}) is None
    assert value("photocraft_kafka_consumer_lag_messages", group="lag-test", topic=TASK_RESULTS) == 2


def test_a_fastapi_app_counts_requests_by_route_template_and_does_not_serve_metrics():
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict:
        return {"id": thing_id}

    metrics.instrument(app)
    route = {"route": "/things/{thing_id}", "method": "GET"}
    before = {status: value("photocraft_http_requests_total", **route, status=status) for status in ("200", "422")}
    before_none = value("photocraft_http_requests_total", route="none", method="GET", status="404")
    with TestClient(app) as client:
        assert client.get("/things/1").status_code == 200
        assert client.get("/things/2").status_code == 200
        assert client.get("/things/x").status_code == 422
        assert client.get("/no/such/path").status_code == 404
        assert client.get("/metrics").status_code == 404  # served on a port of its own (metrics.server)
    assert value("photocraft_http_requests_total", **route, status="200") == before["200"] + 2
    assert value("photocraft_http_requests_total", **route, status="422") == before["422"] + 1
    assert value("photocraft_http_requests_total", route="none", method="GET", status="404") == before_none + 2
    assert "/metrics" not in app.openapi()["paths"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_the_metrics_server_serves_the_registry_alone_and_port_0_is_off():
    port = free_port()
    async with metrics.server("127.0.0.1", port) as bound, httpx.AsyncClient() as client:
        assert bound == port
        scraped = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
        assert "# TYPE photocraft_http_requests_total counter" in scraped.text
        assert (await client.get(f"http://127.0.0.1:{port}/v1/jobs")).status_code == 404
        with pytest.raises(OSError):  # the address is taken
            async with metrics.server("127.0.0.1", port):
                pass
    with pytest.raises(httpx.ConnectError):  # closed on exit
        httpx.get(f"http://127.0.0.1:{port}/metrics")
    async with metrics.server("127.0.0.1", 0) as bound:
        assert bound is None


def test_the_gateway_serves_metrics_on_its_metrics_port_only():
    port = free_port()
    settings = GatewaySettings(keyring=KEYRING, metrics_port=port)
    with TestClient(create_app(settings, Gateway().connect)) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get("/healthz").status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200
        assert 'photocraft_http_requests_total{method="GET",route="/healthz",status="200"}' in scraped.text
    with pytest.raises(httpx.ConnectError):  # stopped with the app
        httpx.get(f"http://127.0.0.1:{port}/metrics")


@pytest.fixture
async def endings():
    redis = FakeAsyncRedis(server=FakeServer())
    jobs = JobStore(redis, 3600)
    broker = KafkaBroker()
    async with TestKafkaBroker(broker):
        yield jobs, Endings(jobs, StageStore(redis, 3600), BatchStore(redis, 3600), EventPublisher(broker),
                            Quotas(redis))
    await redis.aclose()


async def test_a_job_that_ends_twice_is_counted_once(endings):
    jobs, ending = endings
    await jobs.create("m1", "t1", "denoise", "{}", PHOTO, "token", "free", "standard")
    labels = {"operation": "denoise", "outcome": "failed"}
    before = value("photocraft_jobs_finished_total", **labels)
    before_seconds = value("photocraft_job_duration_seconds_count", **labels)
    await ending.fail(await jobs.get("m1"), Fail("internal-error", "Triton restarting", "denoise"))
    await ending.fail(await jobs.get("m1"), Fail("timeout", "late second end", "denoise"))  # another replica
    assert value("photocraft_jobs_finished_total", **labels) == before + 1
    assert value("photocraft_job_duration_seconds_count", **labels) == before_seconds + 1


def test_stage_durations_come_from_the_workers_results():
    labels = {"model": "u2netp", "outcome": "output"}
    before = value("photocraft_stage_duration_seconds_sum", **labels)
    result = pb.TaskResult(model="u2netp", duration_ms=1500, output=pb.TaskOutput())
    assert scheduler_metrics.stage_ended(result) is result
    assert value("photocraft_stage_duration_seconds_sum", **labels) == pytest.approx(before + 1.5)


def test_queue_wait_is_observed_for_first_attempts_by_lane_and_tier():
    job = record("denoise", lane="fast", tier="pro")
    labels = {"lane": "fast", "tier": "pro"}
    before_sum = value("photocraft_queue_wait_seconds_sum", **labels)
    before_count = value("photocraft_queue_wait_seconds_count", **labels)
    queued = pb.TaskDispatched(job_id="j1", stage="denoise", model="scunet", attempt=1)
    queued.dispatched_at.FromSeconds(1_700_000_000)
    scheduler_metrics.released(job, queued, now_s=1_700_000_002.5)
    retry = pb.TaskDispatched(job_id="j1", stage="denoise", model="scunet", attempt=2)
    retry.dispatched_at.FromSeconds(1_700_000_000)
    scheduler_metrics.released(job, retry, now_s=1_700_000_100)  # its wait holds its backoff: left out
    assert value("photocraft_queue_wait_seconds_count", **labels) == before_count + 1
    assert value("photocraft_queue_wait_seconds_sum", **labels) == pytest.approx(before_sum + 2.5)


def test_the_janitor_counts_what_it_purged_and_how_long_it_took():
    before = (value("photocraft_janitor_jobs_purged_total"),
              value("photocraft_janitor_objects_deleted_total", by="index"),
              value("photocraft_janitor_objects_deleted_total", by="sweep"),
              value("photocraft_janitor_round_seconds_count", by="sweep"))
    janitor_metrics.counted(PassReport(entries=9, objects=6, jobs=2, batches=1), "index", 0.2)
    janitor_metrics.counted(SweepReport(scanned=100, deleted=3), "sweep", 4.0)
    assert (value("photocraft_janitor_jobs_purged_total"),
            value("photocraft_janitor_objects_deleted_total", by="index"),
            value("photocraft_janitor_objects_deleted_total", by="sweep"),
            value("photocraft_janitor_round_seconds_count", by="sweep")) == \
        (before[0] + 2, before[1] + 6, before[2] + 3, before[3] + 1)


def test_the_notifier_reports_its_send_queues():
    hub = Hub(redis=None, queue_size=4)
    with hub.subscribe("job:a") as slow, hub.subscribe("tenant:t1"), hub.subscribe("job:b") as idle:
        for _ in range(3):
            slow.offer(None)
        idle.offer(None)
        assert value("photocraft_websocket_send_queue_events", queues="all") == 4
        assert value("photocraft_websocket_send_queue_events", queues="longest") == 3
    assert value("photocraft_websocket_send_queue_events", queues="all") == 0
