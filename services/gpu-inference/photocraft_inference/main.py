"""``photocraft-gpu-inference``: consume the model topics and run their tasks on Triton.

Each model topic has its own consumer (and consumer group), so a model that
is still loading holds back only its own tasks, never another model's.
A consumer takes up to ``batch_size`` tasks at once and runs them
concurrently, so Triton's dynamic batcher has requests to combine; their
offsets are committed together once every result is published. Replicas of
this worker share the consumer groups and split the partitions between them.
In the background the worker reports which models Triton's repository holds
(the gateway refuses jobs whose models are missing) and, whenever it loads a
model, the digest of its weights (the scheduler addresses reusable results
with it). See docs/gpu-inference.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tomllib
from pathlib import Path

from faststream import FastStream
from prometheus_client import start_http_server
from redis.asyncio import Redis

from photocraft_common import logs
from photocraft_common.contracts import DecodeError, TaskDispatched, parse
from photocraft_common.kafka import AckPolicy, make_broker, subscriber_options, with_backoff
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


async def report_availability(pool: TritonPool, directory: ModelDirectory, interval_s: float) -> None:
    while True:
        try:
            present = await pool.repository()
            await directory.publish_available(present, ttl_s=3 * interval_s)
            await directory.forget_weights_except(set(present))
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

    @with_backoff
    async def handle(bodies: list[bytes]) -> None:
        tasks = []
        for body in bodies:
            try:
                tasks.append(parse(TaskDispatched, body))
            except DecodeError:
                log.error("undecodable TaskDispatched skipped (%d bytes)", len(body))
        await asyncio.gather(*(worker.handle(task) for task in tasks))

    for model in settings.models:
        # NACK_ON_ERROR: an exception (a result that could not be published) leaves the
        # offsets uncommitted and the tasks are consumed again.
        options = subscriber_options(settings.kafka, inference_group(model), AckPolicy.NACK_ON_ERROR)
        broker.subscriber(model_topic(model), batch=True, max_records=settings.batch_size, **options)(handle)

    app = FastStream(broker)
    background: list[asyncio.Task] = []

    @app.on_startup
    async def start() -> None:
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host)
        await pool.start()
        background.append(asyncio.create_task(
            report_availability(pool, directory, settings.availability_interval_s)))

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
