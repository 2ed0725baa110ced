"""The storage-janitor's Prometheus metrics (on its health server's ``/metrics``; the list is
docs/observability.md). ``by``: ``index`` (a pass over the expiry index) or ``sweep`` (a LIST of the bucket)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from .janitor import PassReport, SweepReport

JOBS_PURGED = Counter("photocraft_janitor_jobs_purged_total", "Jobs whose records were purged at their deadline")
OBJECTS_DELETED = Counter("photocraft_janitor_objects_deleted_total", "S3 objects deleted (or found gone)", ["by"])
ROUND_SECONDS = Histogram("photocraft_janitor_round_seconds", "Seconds of one pass over the index or one sweep",
                          ["by"], buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600))


def counted(report: PassReport | SweepReport, by: str, seconds: float) -> None:
    """Count what one round (``by``: index or sweep) purged, and its duration."""
    if isinstance(report, PassReport):
        JOBS_PURGED.inc(report.jobs)
        OBJECTS_DELETED.labels(by).inc(report.objects)
    else:
        OBJECTS_DELETED.labels(by).inc(report.deleted)
    ROUND_SECONDS.labels(by).observe(seconds)
