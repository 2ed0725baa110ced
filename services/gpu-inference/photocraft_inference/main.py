"""``photocraft-gpu-inference``: consume the model topics and run their tasks on Triton.

Each model topic has its own consumer (and consumer group), so a model that
is still loading holds back only its own tasks, never another model's.
A consumer takes up to ``batch_size`` tasks at once and runs them
concurrently, so Triton's dynamic batcher has requests to combine; their
offsets are committed together once every result is published. Replicas of
this worker share the consumer groups and split the partitions between them.
In the background the worker reports which models Triton's repository holds
(the gateway refuses jobs whose models are missing), its task slots per model
(the scheduler releases no more tasks than the workers can take) and, whenever
it loads a model, the digest of its weights (the scheduler addresses reusable
results with it). A message that cannot be handled goes to the dead-letter
topic. See docs/gpu-inference.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tomllib
from pathlib import Path

from faststream import FastStream
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import start_http_server
from redis.asyncio import Redis

from photocraft_common import logs
from photocraft_common.capacity import report_capacity
from photocraft_common.contracts import TaskDispatched, parse
from photocraft_common.kafka import AckPolicy, handle_or_dead_letter, make_broker, subscriber_options
from photocraft_common.models import ModelDirectory
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import inference_group, model_topic

from .settings import InferenceSettings
from .triton import TritonPool
from .worker import Worker

log = logging.getLogger("photocraft.inference")


def footprints(registry: Path) -> dict[str, int]:
    """Measured memory of each model (bytes) from models/registry.toml; unmeasured ones left out."""
    with open(registry, "rb") as f:
        models = tomllib.load(f)["models"]
    return {name: entry["memory_bytes"] for name, entry in models.items() if entry.get("memory_bytes")}


async def report(pool: TritonPool, directory: ModelDirectory, redis: Redis, settings: InferenceSettings) -> None:
    """Every few seconds: the models Triton holds, and this worker's task slots per model."""
    interval_s = settings.availability_interval_s
    while True:
        try:
            present = await pool.repository()
            await directory.publish_available(present, ttl_s=3 * interval_s)
            await directory.forget_weights_except(set(present))
            await report_capacity(redis, settings.worker_id, settings.models, settings.batch_size, 3 * interval_s)
        except Exception as exc:  # Triton restarting, Redis down: report again next time
            log.warning("cannot report the models Triton holds: %r", exc)
        await asyncio.sleep(interval_s)


def create_app(settings: InferenceSettings) -> FastStream:
    """Build the app; call inside the running event loop (gRPC clients bind to it)."""
    broker = make_broker(settings.kafka, f"photocraft-gpu-inference-{settings.worker_id}")
    redis = Redis.from_url(settings.redis.url)
    directory = ModelDirectory(redis)

    async def on_load(model: str, config: dict) -> None:
        digest = config.get("parameters", {}).get("photocraft.weights", {}).get("string_value")
        if digest:
            await directory.record_weights(model, digest)

    pool = TritonPool(settings, redis, footprints(settings.model_registry), on_load=on_load)
    worker = Worker(broker, ObjectStore(settings.s3), pool, settings.worker_id)

    async def run(record) -> None:
        await handle_or_dead_letter(broker, record, lambda: worker.handle(parse(TaskDispatched, record.value)))

    async def handle(bodies: list[bytes], message: KafkaMessage) -> None:
        await asyncio.gather(*(run(record) for record in message.raw_message))

    for model in settings.models:
        # Handlers raise only when even the dead-letter topic cannot be written; then
        # NACK_ON_ERROR leaves the offsets uncommitted and the tasks are consumed again.
        options = subscriber_options(settings.kafka, inference_group(model), AckPolicy.NACK_ON_ERROR)
        broker.subscriber(model_topic(model), batch=True, max_records=settings.batch_size, **options)(handle)

    app = FastStream(broker)
    background: list[asyncio.Task] = []

    @app.on_startup
    async def start() -> None:
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)
        await pool.start()
        background.append(asyncio.create_task(report(pool, directory, redis, settings)))

    @app.on_shutdown
    async def stop() -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.after_shutdown(pool.close)
    app.after_shutdown(redis.aclose)
    return app


async def serve(settings: InferenceSettings) -> None:
    await create_app(settings).run()


def main() -> None:
    settings = InferenceSettings()
    logs.configure("gpu-inference", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
