"""``photocraft-storage-janitor``: purge what the expiry index says is due, and sweep the bucket seldom.

Settings (environment): ``PHOTOCRAFT_JOB_TTL_S``, the one lifetime of everything of a job (default
86400, 24 h; the sweep's cutoff and the lifecycle rule), ``PHOTOCRAFT_INTERVAL_S`` between passes over
the index (default 300) and ``PHOTOCRAFT_SWEEP_INTERVAL_S`` between LIST sweeps of the whole bucket
(default 86400), plus the Redis and S3 settings every service has. ``/healthz`` and ``/readyz``
(Redis and S3) and ``/metrics`` (Prometheus: metrics.py) answer on ``PHOTOCRAFT_HOST``:``PHOTOCRAFT_PORT``
(default 127.0.0.1:9420; port 0: any free one). Run one replica, or several: purging an entry twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable

from photocraft_common import logs, telemetry
from photocraft_common.background import Background, every
from photocraft_common.expiry import ExpiryIndex
from photocraft_common.health import HealthServer, checks
from photocraft_common.redis_client import make_redis
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import make_client

from .janitor import ensure_lifecycle_rule, purge_due, sweep
from .metrics import counted

log = logging.getLogger("photocraft.janitor")


class JanitorSettings(PlatformSettings):
    interval_s: float = 300  # between passes over the expiry index
    sweep_interval_s: float = 86400  # between LIST sweeps of the whole bucket (the safety net)
    host: str = "127.0.0.1"  # the health server; containers set 0.0.0.0
    port: int = 9420


def passer(index: ExpiryIndex, s3) -> Callable[[], Awaitable[None]]:
    """One pass over the index, at the current time."""
    async def pass_once() -> None:
        started = time.monotonic()
        report = await purge_due(index, s3, time.time())
        counted(report, "index", time.monotonic() - started)
        if report.entries:
            log.info("purged %d due entries in %.1f s: %d objects, %d jobs, %d batches; %d kept for later",
                     report.entries, time.monotonic() - started, report.objects, report.jobs, report.batches,
                     len(report.failed))
    return pass_once


def sweeper(s3, bucket: str, settings: JanitorSettings) -> Callable[[], Awaitable[None]]:
    """One sweep of ``bucket``; the lifecycle rule is put before the first sweep that reaches S3."""
    rule_put = False

    async def sweep_once() -> None:
        nonlocal rule_put
        if not rule_put:
            await asyncio.to_thread(ensure_lifecycle_rule, s3, bucket, settings.job_ttl_s)
            rule_put = True
        started = time.monotonic()
        report = await asyncio.to_thread(sweep, s3, bucket, settings.job_ttl_s)
        counted(report, "sweep", time.monotonic() - started)
        log.info("swept %s: %d objects, %d deleted", bucket, report.scanned, report.deleted)
    return sweep_once


async def serve(settings: JanitorSettings) -> None:
    """Pass over the index now and every ``interval_s``, sweep now and every ``sweep_interval_s`` (a failed
    round is logged; the next tries again) until SIGTERM or SIGINT."""
    s3, bucket, redis = make_client(settings.s3), settings.s3.bucket, make_redis(settings.redis)
    index = ExpiryIndex(redis, settings.job_ttl_s)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    health = HealthServer(checks(redis=redis, s3=s3, bucket=bucket), settings.host, settings.port)
    await health.start()
    log.info("purging due entries every %.0f s; sweeping %s for objects older than %d s every %.0f s",
             settings.interval_s, bucket, settings.job_ttl_s, settings.sweep_interval_s)
    background = Background()
    background.start(every(settings.interval_s, passer(index, s3), "pass over the expiry index",
                           first_wait=False, logger=log), "purge")
    background.start(every(settings.sweep_interval_s, sweeper(s3, bucket, settings), f"sweep of {bucket}",
                           first_wait=False, logger=log), "sweep")
    try:
        await stop.wait()
    finally:
        await background.stop()
        await health.stop()
        await redis.aclose()


def main() -> None:
    settings = JanitorSettings()
    logs.configure("storage-janitor", settings.log_level, settings.log_format)
    telemetry.setup_tracing("storage-janitor", settings)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
