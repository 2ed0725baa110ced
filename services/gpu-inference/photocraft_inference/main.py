"""``photocraft-gpu-inference``: consume the model topics and run their tasks.

Each model topic has its own consumer (and consumer group), so a model that
is slow or still loading does not hold back the others' tasks. Replicas of
this worker share those groups and split the partitions between them.
"""

from __future__ import annotations

import asyncio
import logging

from faststream import FastStream

from photocraft_common import logs
from photocraft_common.contracts import DecodeError, TaskDispatched, parse
from photocraft_common.kafka import AckPolicy, make_broker, subscriber_options, with_backoff
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import inference_group, model_topic

from .settings import InferenceSettings
from .triton import Triton
from .worker import Worker

log = logging.getLogger("photocraft.inference")


def create_app(settings: InferenceSettings) -> FastStream:
    """Build the app; call inside the running event loop (the gRPC client binds to it)."""
    broker = make_broker(settings.kafka, f"photocraft-gpu-inference-{settings.worker_id}")
    triton = Triton(settings.triton)
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
    app.after_shutdown(triton.close)
    return app


async def serve(settings: InferenceSettings) -> None:
    await create_app(settings).run()


def main() -> None:
    settings = InferenceSettings()
    logs.configure("gpu-inference", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
