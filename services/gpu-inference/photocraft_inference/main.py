"""``photocraft-gpu-inference``: consume the model topics and run their tasks.

Each model topic has its own consumer (and consumer group), so a model that
is slow or still loading does not hold back the others' tasks. Replicas of
this worker share those groups and split the partitions between them. In the
background the worker reports which models Triton's repository holds (the
gateway refuses jobs whose models are missing) and, whenever it loads a
model, the digest of its weights (the scheduler addresses reusable results
with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream import FastStream
from redis.asyncio import Redis
from tritonclient.utils import InferenceServerException

from photocraft_common import logs
from photocraft_common.contracts import DecodeError, TaskDispatched, parse
from photocraft_common.kafka import AckPolicy, make_broker, subscriber_options, with_backoff
from photocraft_common.models import ModelDirectory
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import inference_group, model_topic

from .settings import InferenceSettings
from .triton import Triton
from .worker import Worker

log = logging.getLogger("photocraft.inference")


async def report_availability(triton: Triton, directory: ModelDirectory, interval_s: float) -> None:
    while True:
        try:
            present = await triton.repository()
            await directory.publish_available(present, ttl_s=3 * interval_s)
            await directory.forget_weights_except(set(present))
        except (InferenceServerException, OSError) as exc:
            log.warning("cannot read Triton's model repository: %s", exc)
        await asyncio.sleep(interval_s)


def create_app(settings: InferenceSettings) -> FastStream:
    """Build the app; call inside the running event loop (the gRPC client binds to it)."""
    broker = make_broker(settings.kafka, f"photocraft-gpu-inference-{settings.worker_id}")
    redis = Redis.from_url(settings.redis.url)
    directory = ModelDirectory(redis)

    async def on_load(model: str, config: dict) -> None:
        digest = config.get("parameters", {}).get("photocraft.weights", {}).get("string_value")
        if digest:
            await directory.record_weights(model, digest)

    triton = Triton(settings.triton, on_load=on_load)
    worker = Worker(broker, ObjectStore(settings.s3), triton, settings.worker_id)

    @with_backoff
    async def handle(body: bytes) -> None:
        try:
            task = parse(TaskDispatched, body)
        except DecodeError:
            log.error("undecodable TaskDispatched skipped (%d bytes)", len(body))
            return
        await worker.handle(task)

    for model in settings.models:
        # NACK_ON_ERROR: an exception leaves the offset uncommitted and the
        # task is consumed again.
        options = subscriber_options(settings.kafka, inference_group(model), AckPolicy.NACK_ON_ERROR)
        broker.subscriber(model_topic(model), **options)(handle)

    app = FastStream(broker)
    reporter: list[asyncio.Task] = []

    @app.after_startup
    async def start_reporting() -> None:
        reporter.append(asyncio.create_task(
            report_availability(triton, directory, settings.availability_interval_s)))

    @app.on_shutdown
    async def stop_reporting() -> None:
        for task in reporter:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.after_shutdown(triton.close)
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
