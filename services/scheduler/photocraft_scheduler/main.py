"""``photocraft-scheduler``: consume submitted jobs and task results.

Replicas share the consumer group ``photocraft-scheduler``; Kafka gives each
replica its own partitions, and one job's messages always land in the same one.
"""

from __future__ import annotations

import asyncio
import logging

from faststream import FastStream
from redis.asyncio import Redis

from photocraft_common import logs
from photocraft_common.contracts import DecodeError, JobSubmitted, TaskResult, parse
from photocraft_common.kafka import AckPolicy, make_broker, subscriber_options, with_backoff
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import JOBS_SUBMITTED, SCHEDULER_GROUP, TASK_RESULTS

from .scheduler import Scheduler

log = logging.getLogger("photocraft.scheduler")


def create_app(settings: PlatformSettings) -> FastStream:
    broker = make_broker(settings.kafka, "photocraft-scheduler")
    redis = Redis.from_url(settings.redis.url)
    scheduler = Scheduler(broker, redis, ObjectStore(settings.s3), settings.job_ttl_s)
    # Errors other than undecodable messages are retried with backoff, then
    # propagate: the offset is not committed and the message is consumed again.
    options = subscriber_options(settings.kafka, SCHEDULER_GROUP, AckPolicy.NACK_ON_ERROR)

    @broker.subscriber(JOBS_SUBMITTED, **options)
    @with_backoff
    async def on_submitted(body: bytes) -> None:
        try:
            job = parse(JobSubmitted, body)
        except DecodeError:
            log.error("undecodable JobSubmitted skipped (%d bytes)", len(body))
            return
        await scheduler.on_submitted(job)

    @broker.subscriber(TASK_RESULTS, **options)
    @with_backoff
    async def on_result(body: bytes) -> None:
        try:
            result = parse(TaskResult, body)
        except DecodeError:
            log.error("undecodable TaskResult skipped (%d bytes)", len(body))
            return
        await scheduler.on_result(result)

    app = FastStream(broker)
    app.after_shutdown(redis.aclose)
    return app


async def serve(settings: PlatformSettings) -> None:
    await create_app(settings).run()


def main() -> None:
    settings = PlatformSettings()
    logs.configure("scheduler", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
