"""The scheduler's Prometheus metrics (served on its health server's ``/metrics``; the list is
docs/observability.md). The shared ones (jobs submitted and finished, Kafka hops, consumer lag) are in
photocraft_common.metrics.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram

from photocraft_common import contracts as pb
from photocraft_common.jobs import JobRecord
from photocraft_common.metrics import JOBS_FINISHED_TOTAL
from photocraft_common.topics import model_topic

log = logging.getLogger("photocraft.scheduler")

SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

JOB_SECONDS = Histogram("photocraft_job_duration_seconds", "Seconds from a job's record to its end",
                        ["operation", "outcome"], buckets=SECONDS)
STAGE_SECONDS = Histogram("photocraft_stage_duration_seconds",
                          "Seconds a worker spent on a stage (its TaskResult's duration); outcome output or error",
                          ["model", "outcome"], buckets=SECONDS)
QUEUE_WAIT = Histogram("photocraft_queue_wait_seconds",
                       "Seconds a stage's first attempt waited in the fair-share queue until released to its model",
                       ["lane", "tier"], buckets=SECONDS)

USAGE_RECORDS = Counter("photocraft_usage_records_total", "Jobs recorded in the usage ledger (once each)",
                        ["outcome"])


def recorded(outcome: str) -> None:
    """Count one job newly recorded in the usage ledger, by its ledger outcome."""
    USAGE_RECORDS.labels(outcome).inc()


def ended(record: JobRecord, outcome: str, now_s: float | None = None) -> None:
    """Count ``record``'s job as ended with ``outcome`` (completed, failed), and its duration."""
    JOBS_FINISHED_TOTAL.labels(record.operation, outcome).inc()
    elapsed = (time.time() if now_s is None else now_s) - record.created_at
    JOB_SECONDS.labels(record.operation, outcome).observe(max(0.0, elapsed))


def stage_ended(result: pb.TaskResult) -> pb.TaskResult:
    """Observe ``result``'s stage duration (a result delivered again counts again); returns ``result``."""
    STAGE_SECONDS.labels(result.model, result.WhichOneof("outcome") or "none").observe(result.duration_ms / 1000)
    return result


def released(record: JobRecord, task: pb.TaskDispatched, now_s: float | None = None) -> None:
    """Log ``task``'s release to its model's topic and, for a first attempt, observe its wait since it was
    queued (``dispatched_at``; a retry's includes its backoff, so it is left out)."""
    log.info("job %s: %s (attempt %d) released to %s", task.job_id, task.stage, task.attempt,
             model_topic(task.model))
    if task.attempt == 1:
        waited = (time.time() if now_s is None else now_s) - task.dispatched_at.ToNanoseconds() / 1e9
        QUEUE_WAIT.labels(record.lane, record.tier).observe(max(0.0, waited))
