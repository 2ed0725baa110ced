"""``photocraft-storage-janitor``: sweep the bucket every ``interval_s`` seconds.

Settings (environment): ``PHOTOCRAFT_TTL_S`` (default 86400, 24 h) and
``PHOTOCRAFT_INTERVAL_S`` (default 300), plus the S3 settings every service has.
``/healthz`` and ``/readyz`` (S3, its only dependency) answer on
``PHOTOCRAFT_HOST``:``PHOTOCRAFT_PORT`` (default 127.0.0.1:9420; port 0: any free one).
Run one replica, or several: deleting an object twice is harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from photocraft_common import logs
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


async def serve(settings: JanitorSettings) -> None:
    """Sweep until SIGTERM or SIGINT; the lifecycle rule is put before the first sweep that reaches S3."""
    s3, bucket = make_client(settings.s3), settings.s3.bucket
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    health = HealthServer(checks(s3=s3, bucket=bucket), settings.host, settings.port)
    await health.start()
    log.info("purging objects older than %.0f s from %s every %.0f s",
             settings.ttl_s, bucket, settings.interval_s)
    rule_put = False
    try:
        while not stop.is_set():
            try:
                if not rule_put:
                    await asyncio.to_thread(ensure_lifecycle_rule, s3, bucket, int(settings.ttl_s))
                    rule_put = True
                report = await asyncio.to_thread(sweep, s3, bucket, settings.ttl_s)
                log.info("swept %s: %d objects, %d deleted", bucket, report.scanned, report.deleted)
            except Exception:
                log.exception("sweep of %s failed; retrying in %.0f s", bucket, settings.interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.interval_s)
    finally:
        await health.stop()


def main() -> None:
    settings = JanitorSettings()
    logs.configure("storage-janitor", settings.log_level)
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
