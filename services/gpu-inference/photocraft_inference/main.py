"""``photocraft-gpu-inference``: consume the model topics and run their tasks on Triton.

Each model topic has its own consumer (and consumer group), so a model that
is still loading holds back only its own tasks, never another model's.
A consumer takes up to ``batch_size`` tasks at once and runs them
concurrently, so Triton's dynamic batcher has requests to combine; their
offsets are committed together once every result is published. Replicas of
this worker share the consumer groups and split the partitions between them.
In the background the worker reports which models Triton's repository holds
(the gateway refuses jobs whose models are missing) with their licences; a model
whose licence forbids commercial use is withheld, neither advertised nor called,
unless ``PHOTOCRAFT_ACCEPT_MODEL_LICENCES`` names its licence
(photocraft_common.licences). It also reports its task slots per model
(the scheduler releases no more tasks than the workers can take) and the digests
of the models Triton has loaded, recorded too whenever it loads one (the scheduler
addresses reusable results with them; digests.py). A message that cannot be handled goes to the dead-letter
topic. With ``PHOTOCRAFT_METRICS_PORT`` set, ``/metrics`` (Prometheus), ``/healthz`` and
``/readyz`` (Kafka, Redis, S3 and at least one Triton instance ready) answer on it. See docs/gpu-inference.md.
"""

from __future__ import annotations

import asyncio
import logging
import tomllib
from collections.abc import Awaitable, Callable, Mapping

from faststream import FastStream
from faststream.kafka.annotations import KafkaMessage
from redis.asyncio import Redis

from photocraft_common import logs, telemetry
from photocraft_common.background import Background, every
from photocraft_common.capacity import report_capacity
from photocraft_common.contracts import TaskDispatched, parse
from photocraft_common.expiry import ExpiryIndex
from photocraft_common.health import CHECK_TIMEOUT_S, HealthServer, checks
from photocraft_common.kafka import (
    AckPolicy,
    handle_or_dead_letter,
    make_broker,
    poll_without_pause,
    subscriber_options,
)
from photocraft_common.licences import gate, licences
from photocraft_common.metrics import LAG_INTERVAL_S, lag_refresher
from photocraft_common.models import ModelDirectory
from photocraft_common.redis_client import make_redis
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import inference_group, model_topic

from .digests import digest_of, loaded_digests
from .residency import footprints
from .settings import InferenceSettings
from .triton import TritonPool
from .worker import Worker

log = logging.getLogger("photocraft.inference")


def reporter(pool: TritonPool, directory: ModelDirectory, redis: Redis, settings: InferenceSettings,
             registry: Mapping[str, dict]) -> Callable[[], Awaitable[None]]:
    """One report: the models Triton holds that this worker may serve, the licences of all of them (``registry``:
    models/registry.toml's models), and its task slots per model, valid for 3 intervals. Logs each withheld model
    once, with the reason."""
    ttl_s = 3 * settings.availability_interval_s
    logged: set[str] = set()

    async def report() -> None:
        present = await pool.repository()
        entries = licences(registry, present, settings.accept_model_licences)
        for entry in entries:
            if entry.withheld and entry.model not in logged:
                logged.add(entry.model)
                log.warning("model %s is in Triton's repository but not served: %s", entry.model, entry.withheld)
        await directory.publish_available([e.model for e in entries if not e.withheld], ttl_s=ttl_s)
        await directory.publish_licences(entries, ttl_s=ttl_s)
        await directory.keep_weights(await loaded_digests(pool.instances))
        await report_capacity(redis, settings.worker_id, settings.models, settings.batch_size, ttl_s)
    return report


def triton_check(pool: TritonPool):
    """A readiness check: at least one Triton instance answers ready now (a gRPC call to each, at once)."""
    async def check() -> None:
        answers = await asyncio.gather(*(instance.client.is_server_ready(client_timeout=CHECK_TIMEOUT_S)
                                         for instance in pool.instances), return_exceptions=True)
        if not any(answer is True for answer in answers):
            raise ConnectionError("no Triton instance is ready: "
                                  + (", ".join(instance.url for instance in pool.instances) or "none connected yet"))
    return check


def create_app(settings: InferenceSettings) -> FastStream:
    """Build the app; call inside the running event loop (gRPC clients bind to it). Raises ValueError when a
    pinned model is withheld for its licence (photocraft_common.licences)."""
    broker = make_broker(settings.kafka, f"photocraft-gpu-inference-{settings.worker_id}")
    redis = make_redis(settings.redis)
    directory = ModelDirectory(redis)

    async def on_load(model: str, config: dict) -> None:
        if digest := digest_of(config):
            await directory.record_weights(model, digest)

    registry = tomllib.loads(settings.model_registry.read_text())["models"]
    withheld = gate(registry, settings.accept_model_licences)
    if pinned := {m: why for m in settings.residency.pinned if (why := withheld(m))}:
        raise ValueError(f"PHOTOCRAFT_RESIDENCY__PINNED names a model that is not served: {pinned}")
    pool = TritonPool(settings, redis, footprints(registry, settings.residency), withheld, on_load=on_load)
    store = ObjectStore(settings.s3, ExpiryIndex(redis, settings.job_ttl_s))  # objects indexed for purge
    worker = Worker(broker, store, pool, settings.worker_id, settings.required_keyring())

    async def run(record) -> None:
        with telemetry.consumed(record):  # the task's span, in its job's trace
            await handle_or_dead_letter(broker, record,
                                        lambda: worker.handle(logs.bound(parse(TaskDispatched, record.value))))

    async def handle(bodies: list[bytes], message: KafkaMessage) -> None:
        await asyncio.gather(*(run(record) for record in message.raw_message))

    for model in settings.models:
        # Handlers raise only when even the dead-letter topic cannot be written; then
        # NACK_ON_ERROR leaves the offsets uncommitted and the tasks are consumed again.
        options = subscriber_options(settings.kafka, inference_group(model), AckPolicy.NACK_ON_ERROR)
        subscriber = broker.subscriber(model_topic(model), batch=True, max_records=settings.batch_size, **options)
        poll_without_pause(subscriber)(handle)  # no idle pause between polls (kafka.poll_without_pause)

    app = FastStream(broker)
    background = Background()
    if settings.metrics_port:
        readiness = checks(kafka=broker, redis=redis, s3=store.client, bucket=settings.s3.bucket)
        health = HealthServer({**readiness, "triton": triton_check(pool)}, settings.metrics_host,
                              settings.metrics_port)
        app.on_startup(health.start)
        app.after_shutdown(health.stop)

    @app.on_startup
    async def start() -> None:
        await pool.start()
        # A failed report (Triton restarting, Redis away) is logged; the next one tries again.
        background.start(every(settings.availability_interval_s, reporter(pool, directory, redis, settings, registry),
                               "reporting the models Triton holds", first_wait=False, logger=log), "report")
        background.start(every(LAG_INTERVAL_S, lag_refresher(broker), "consumer lag", logger=log), "consumer lag")

    app.on_shutdown(background.stop)
    app.after_shutdown(pool.close)
    app.after_shutdown(redis.aclose)
    return app


async def serve(settings: InferenceSettings) -> None:
    await create_app(settings).run()


def main() -> None:
    settings = InferenceSettings()
    logs.configure("gpu-inference", settings.log_level, settings.log_format)
    telemetry.setup_tracing("gpu-inference", settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
