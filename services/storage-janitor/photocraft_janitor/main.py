"""``photocraft-storage-janitor``: sweep the bucket every ``interval_s`` seconds.

Settings (environment): ``PHOTOCRAFT_TTL_S`` (default 86400, 24 h) and
``PHOTOCRAFT_INTERVAL_S`` (default 300), plus the S3 settings every service has.
``/healthz`` and ``/readyz`` (S3, its only dependency) answer on
``PHOTOCRAFT_HOST``:``PHOTOCRAFT_PORT`` (default 127.0.0.1:9420; port 0: any free one).
Run one replica, or several: deleting an object twice is harmless.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable

from photocraft_common import logs
from photocraft_common.background import Background, every
from photocraft_common.health import HealthServer, checks
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import make_client

from .janitor import ensure_lifecycle_rule, sweep

log = logging.getLogger("photocraft.janitor")


class JanitorSettings(PlatformSettings):
    ttl_s: float = 24 * 3600
    interval_s: float = 300
    host: str = "127.0.0.1"  # the health server; containers set 0.0.0.0
    port: int = 9420


def sweeper(s3, bucket: str, settings: JanitorSettings) -> Callable[[], Awaitable[None]]:
    """One sweep of ``bucket``; the lifecycle rule is put before the first sweep that reaches S3."""
    rule_put = False

    async def sweep_once() -> None:
        nonlocal rule_put
        if not rule_put:
            await asyncio.to_thread(ensure_lifecycle_rule, s3, bucket, int(settings.ttl_s))
            rule_put = True
        report = await asyncio.to_thread(sweep, s3, bucket, settings.ttl_s)
        log.info("swept %s: %d objects, %d deleted", bucket, report.scanned, report.deleted)
    return sweep_once


async def serve(settings: JanitorSettings) -> None:
    """Sweep now and every ``interval_s`` seconds (a failed sweep is logged; the next tries again) until
    SIGTERM or SIGINT."""
    s3, bucket = make_client(settings.s3), settings.s3.bucket
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    health = HealthServer(checks(s3=s3, bucket=bucket), settings.host, settings.port)
    await health.start()
    log.info("purging objects older than %.0f s from %s every %.0f s",
             settings.ttl_s, bucket, settings.interval_s)
    background = Background()
    background.start(every(settings.interval_s, sweeper(s3, bucket, settings), f"sweep of {bucket}",
                           first_wait=False, logger=log), "sweep")
    try:
        await stop.wait()
    finally:
        await background.stop()
        await health.stop()


def main() -> None:
    settings = JanitorSettings()
    logs.configure("storage-janitor", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
