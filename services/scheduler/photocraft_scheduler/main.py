"""``photocraft-scheduler``: consume submitted jobs, cancellations and task results.

Replicas share the consumer group ``photocraft-scheduler``; Kafka gives each
replica its own partitions, and one job's messages always land in the same
one. Every replica also runs the fair-share pump (fairshare.py), whose
decisions are atomic in Redis, so any replica may release any stage, once.
Messages that cannot be handled go to the dead-letter topic; a JobSubmitted that does
ends its job (failed, ``not-processed``: Scheduler.not_processed, found by the message's key, the
job id). A dead-lettered TaskResult leaves its task out until the overdue check (``task_timeout_s``)
retries it as a timed-out attempt; a dead-lettered JobCancelled changes nothing, as the job's record is
cancelled already, and its end is announced at its next message or queue turn. Partner requests
(partners.py) are read from every ``photocraft.partner.<tenant>.requests``
topic by the group ``photocraft-scheduler-partners``; new partners' topics are
found within ``partner_discovery_s``. Usage reports of ended jobs are recorded in the usage ledger
(PostgreSQL) by the group ``photocraft-ledger`` (ledger.py). ``/healthz``, ``/readyz`` (Kafka, Redis,
S3, PostgreSQL) and ``/metrics`` (Prometheus: metrics.py) answer on ``host:port`` (default 127.0.0.1:9410).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from faststream import FastStream
from faststream.kafka.annotations import KafkaMessage

from photocraft_common import logs, telemetry
from photocraft_common.accounts import Accounts
from photocraft_common.background import Background, every
from photocraft_common.contracts import JobCancelled, JobSubmitted, PartnerRequest, TaskResult, UsageReport, parse
from photocraft_common.database import make_engine
from photocraft_common.expiry import ExpiryIndex
from photocraft_common.health import HealthServer, checks
from photocraft_common.kafka import AckPolicy, handle_or_dead_letter, make_broker, subscriber_options
from photocraft_common.metrics import LAG_INTERVAL_S, lag_refresher
from photocraft_common.redis_client import make_redis
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import (
    JOBS_CANCELLED,
    JOBS_SUBMITTED,
    LEDGER_GROUP,
    PARTNER_REQUESTS,
    SCHEDULER_GROUP,
    TASK_RESULTS,
    USAGE_REPORTS,
    partner_tenant,
)
from photocraft_common.usage.ledger import Ledger

from .ledger import LedgerWriter
from .metrics import stage_ended
from .partners import PartnerIntake
from .scheduler import Scheduler
from .settings import SchedulerSettings

log = logging.getLogger("photocraft.scheduler")


def ticker(scheduler: Scheduler, settings: SchedulerSettings) -> Callable[[], Awaitable[None]]:
    """One round of the scheduler's tick, with the overdue check every ``overdue_check_s`` seconds."""
    last_overdue_check = 0.0

    async def tick() -> None:
        nonlocal last_overdue_check
        check_overdue = time.monotonic() - last_overdue_check > settings.overdue_check_s
        with logs.job_scope():  # the jobs a tick releases mark its lines until its end
            await scheduler.tick(check_overdue)
        if check_overdue:
            last_overdue_check = time.monotonic()
    return tick


def create_app(settings: SchedulerSettings) -> FastStream:
    broker = make_broker(settings.kafka, "photocraft-scheduler",
                         metadata_max_age_ms=int(settings.partner_discovery_s * 1000))
    redis = make_redis(settings.redis)
    store = ObjectStore(settings.s3, ExpiryIndex(redis, settings.job_ttl_s))  # objects indexed for purge
    scheduler = Scheduler(broker, redis, store, settings)
    engine = make_engine(settings.database)  # connects at the first report or partner request
    partners = PartnerIntake(redis, store, scheduler.jobs, scheduler.events, broker, settings, Accounts(engine))
    ledger = LedgerWriter(Ledger(engine, settings.prices))
    # Handlers never raise but when even the dead-letter topic cannot be written: then the
    # offset stays where it is (NACK) and the message comes again.
    options = subscriber_options(settings.kafka, SCHEDULER_GROUP, AckPolicy.NACK_ON_ERROR)

    @broker.subscriber(JOBS_SUBMITTED, **options)
    async def on_submitted(body: bytes, message: KafkaMessage) -> None:
        record = message.raw_message
        job_id = (record.key or b"").decode(errors="replace")  # JobSubmitted is keyed by its job id
        await handle_or_dead_letter(broker, record, lambda: scheduler.on_submitted(parse(JobSubmitted, body)),
                                    on_dead_letter=lambda error: scheduler.not_processed(job_id, error))

    @broker.subscriber(JOBS_CANCELLED, **options)
    async def on_cancelled(body: bytes, message: KafkaMessage) -> None:
        await handle_or_dead_letter(broker, message.raw_message,
                                    lambda: scheduler.on_cancelled(parse(JobCancelled, body).job_id))

    @broker.subscriber(TASK_RESULTS, **options)
    async def on_result(body: bytes, message: KafkaMessage) -> None:
        await handle_or_dead_letter(broker, message.raw_message,
                                    lambda: scheduler.on_result(stage_ended(parse(TaskResult, body))))

    @broker.subscriber(pattern=PARTNER_REQUESTS,
                       **{**options, "group_id": f"{SCHEDULER_GROUP}-partners"})
    async def on_partner_request(body: bytes, message: KafkaMessage) -> None:
        tenant = partner_tenant(message.raw_message.topic)
        await handle_or_dead_letter(broker, message.raw_message,
                                    lambda: partners.on_request(tenant, parse(PartnerRequest, body)))

    if settings.usage_reports:  # else no usage is metered: no reports, no ledger consumer
        @broker.subscriber(USAGE_REPORTS, **{**options, "group_id": LEDGER_GROUP})
        async def on_usage(body: bytes, message: KafkaMessage) -> None:
            await handle_or_dead_letter(broker, message.raw_message,
                                        lambda: ledger.on_report(parse(UsageReport, body)),
                                        retry_for_s=settings.ledger_retry_s)

    app = FastStream(broker)
    background = Background()
    health = HealthServer(checks(kafka=broker, redis=redis, s3=store.client, bucket=settings.s3.bucket,
                                 postgres=engine),
                          settings.host, settings.port)
    app.on_startup(health.start)
    app.after_shutdown(health.stop)

    @app.after_startup
    async def start_ticking() -> None:
        # A failed tick (Redis or Kafka away for a moment) is logged; the next one tries again.
        background.start(every(settings.tick_s, ticker(scheduler, settings), "scheduler tick", logger=log),
                         "scheduler tick")
        background.start(every(LAG_INTERVAL_S, lag_refresher(broker), "consumer lag", logger=log), "consumer lag")

    app.on_shutdown(background.stop)
    app.after_shutdown(redis.aclose)
    app.after_shutdown(engine.dispose)
    return app


async def serve(settings: SchedulerSettings) -> None:
    await create_app(settings).run()


def main() -> None:
    settings = SchedulerSettings()
    logs.configure("scheduler", settings.log_level, settings.log_format)
    telemetry.setup_tracing("scheduler", settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
