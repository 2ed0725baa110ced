"""``photocraft-storage-janitor``: sweep the bucket every ``interval_s`` seconds.

Settings (environment): ``PHOTOCRAFT_TTL_S`` (default 86400, 24 h) and
``PHOTOCRAFT_INTERVAL_S`` (default 300), plus the S3 settings every service has.
Run one replica, or several: deleting an object twice is harmless.
"""

from __future__ import annotations

import logging
import signal
import threading

from photocraft_common import logs
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import make_client

from .janitor import ensure_lifecycle_rule, sweep

log = logging.getLogger("photocraft.janitor")


class JanitorSettings(PlatformSettings):
    ttl_s: float = 24 * 3600
    interval_s: float = 300


def main() -> None:
    settings = JanitorSettings()
    logs.configure("storage-janitor", settings.log_level)
    s3, bucket = make_client(settings.s3), settings.s3.bucket
    ensure_lifecycle_rule(s3, bucket, int(settings.ttl_s))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("purging objects older than %.0f s from %s every %.0f s",
             settings.ttl_s, bucket, settings.interval_s)
    while not stop.is_set():
        try:
            report = sweep(s3, bucket, settings.ttl_s)
            log.info("swept %s: %d objects, %d deleted", bucket, report.scanned, report.deleted)
        except Exception:
            log.exception("sweep of %s failed; retrying in %.0f s", bucket, settings.interval_s)
        stop.wait(settings.interval_s)


if __name__ == "__main__":
    main()
