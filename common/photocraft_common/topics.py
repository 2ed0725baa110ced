"""The Kafka topics of the platform, their partition counts, retention and consumer groups.

Topics are created by ``photocraft-bootstrap`` (never auto-created), which also
brings existing topics to these specs. Every message is keyed by its job id.

Retention: no message outlives its topic's ``max_age_ms``: the lifetime of a job
(``PlatformSettings.job_ttl_s``, 24 h) for topics that carry prompts, parameters
or events, and at most ``PARTNER_REQUEST_MAX_AGE_S`` (1 h) for partner requests,
which carry photos. Kafka deletes whole segments, checks every
``log.retention.check.interval.ms`` (a broker setting: photocraft-bootstrap reads
it from the brokers) and removes the files ``file.delete.delay.ms`` later, so each
topic gets ``segment.ms`` = max age / 12 and ``retention.ms`` = what is left once
those delays are taken off; timestamps are the broker's (``LogAppendTime``), so a
producer's clock cannot stretch them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .settings import LIFETIME_S

JOBS_SUBMITTED = "photocraft.jobs.submitted"  # JobSubmitted: gateway -> scheduler
TASK_RESULTS = "photocraft.tasks.results"  # TaskResult: gpu-inference -> scheduler
JOB_EVENTS = "photocraft.jobs.events"  # JobEvent: every service -> notifier, partners
JOBS_CANCELLED = "photocraft.jobs.cancelled"  # JobCancelled: gateway -> scheduler
USAGE_REPORTS = "photocraft.usage.reports"  # UsageReport: scheduler (a job's end) -> scheduler's ledger consumer
DEAD_LETTERS = "photocraft.deadletter"  # a reference to each message no consumer could handle, and the error
MODEL_TOPIC_PREFIX = "photocraft.tasks.model."  # TaskDispatched: scheduler -> gpu-inference
PARTITIONS = 6  # of every platform topic
MODEL_TOPIC_PARTITIONS = PARTITIONS  # the scheduler places tasks on them itself (fairshare.py)

# Partners: PartnerRequest in, JobEvent out, one pair of topics per partner tenant
# (made by `photocraft-tenants partner`), so Kafka ACLs can tell partners apart.
PARTNER_REQUESTS = "photocraft.partner.{tenant}.requests"
PARTNER_EVENTS = "photocraft.partner.{tenant}.events"
PARTNER_MESSAGE_BYTES = 16 * 1024 * 1024  # the largest request: a photo of up to 15 MiB
PARTNER_REQUEST_MAX_AGE_S = 3600  # photos stay in Kafka no longer than intake needs

SCHEDULER_GROUP = "photocraft-scheduler"
NOTIFIER_GROUP = "photocraft-notifier"
LEDGER_GROUP = "photocraft-ledger"  # records UsageReports in the usage ledger (PostgreSQL)


def model_topic(model: str) -> str:
    """The topic that carries TaskDispatched messages for one Triton model."""
    return MODEL_TOPIC_PREFIX + model


def partner_tenant(topic: str) -> str | None:
    """The tenant whose partner topic (requests or events) ``topic`` is; None for any other topic."""
    for template in (PARTNER_REQUESTS, PARTNER_EVENTS):
        prefix, suffix = template.split("{tenant}")
        if topic.startswith(prefix) and topic.endswith(suffix) and len(topic) > len(prefix) + len(suffix):
            return topic[len(prefix):-len(suffix)]
    return None


def inference_group(model: str) -> str:
    """The consumer group of the gpu-inference workers serving one model."""
    return f"photocraft-inference-{model}"


@dataclass(frozen=True)
class Channel:
    """A topic as the AsyncAPI document (docs/asyncapi.yaml) describes it."""

    address: str  # may hold {tenant} or {model}
    message: str  # the photocraft.v1 message type its values hold
    writers: str
    readers: str
    partner: bool = False  # part of the partner contract


CHANNELS = [
    Channel(PARTNER_REQUESTS, "PartnerRequest", "the partner", "scheduler", partner=True),
    Channel(PARTNER_EVENTS, "JobEvent", "notifier", "the partner", partner=True),
    Channel(JOBS_SUBMITTED, "JobSubmitted", "gateway, scheduler (partner requests)", "scheduler"),
    Channel(JOBS_CANCELLED, "JobCancelled", "gateway", "scheduler"),
    Channel(MODEL_TOPIC_PREFIX + "{model}", "TaskDispatched", "scheduler", "gpu-inference"),
    Channel(TASK_RESULTS, "TaskResult", "gpu-inference", "scheduler"),
    Channel(JOB_EVENTS, "JobEvent", "gateway, scheduler, gpu-inference", "notifier"),
    Channel(USAGE_REPORTS, "UsageReport", "scheduler", "scheduler (ledger)"),
]


# Kafka's defaults: how often a broker looks for segments past retention (log.retention.check.interval.ms,
# a broker setting: brokers with a longer one keep messages longer; the local broker checks every 10 s), and how
# long it keeps a deleted segment's files (file.delete.delay.ms, set on every topic).
RETENTION_CHECK_INTERVAL_MS = 5 * 60 * 1000
FILE_DELETE_DELAY_MS = 60 * 1000
MIN_RETENTION_MS = 60 * 1000  # what consumers get at the least to read a message
SEGMENTS_PER_MAX_AGE = 12


@dataclass(frozen=True)
class TopicSpec:
    """A topic as photocraft-bootstrap makes it.

    ``max_age_ms``: the longest a message stays in Kafka, readable or on disk, given brokers check
    retention every ``check_interval_ms`` and the topic keeps deleted files ``file_delete_delay_ms``.
    Raises ValueError when it is too short to leave consumers ``min_retention_ms`` to read a message
    (the defaults are for production; tests shorten all three with the lifetime).
    """

    name: str
    partitions: int
    max_age_ms: int
    max_message_bytes: int = 1024 * 1024
    check_interval_ms: int = RETENTION_CHECK_INTERVAL_MS
    file_delete_delay_ms: int = FILE_DELETE_DELAY_MS
    min_retention_ms: int = MIN_RETENTION_MS

    def __post_init__(self) -> None:
        if self.check_interval_ms <= 0 or self.file_delete_delay_ms < 0:
            raise ValueError(f"{self.name}: log.retention.check.interval.ms={self.check_interval_ms} and "
                             f"file.delete.delay.ms={self.file_delete_delay_ms}: the first must be positive, "
                             "the second not negative")
        if self.retention_ms < self.min_retention_ms:
            delays_ms = self.min_retention_ms + self.check_interval_ms + self.file_delete_delay_ms
            shortest_s = math.ceil(delays_ms * SEGMENTS_PER_MAX_AGE / (SEGMENTS_PER_MAX_AGE - 1) / 1000)
            raise ValueError(f"{self.name}: a maximum age of {self.max_age_ms / 1000:g} s is too short for Kafka "
                             f"(segments, log.retention.check.interval.ms={self.check_interval_ms}, "
                             f"file.delete.delay.ms={self.file_delete_delay_ms}); at least {shortest_s} s")

    @property
    def segment_ms(self) -> int:
        """A segment is rolled (and so may be deleted) once its first message is this old."""
        return self.max_age_ms // SEGMENTS_PER_MAX_AGE

    @property
    def retention_ms(self) -> int:
        """Kafka deletes a segment once its newest message is this old."""
        return self.max_age_ms - self.segment_ms - self.check_interval_ms - self.file_delete_delay_ms

    def configs(self) -> dict[str, str]:
        """The topic-level configs of this spec, as Kafka names them."""
        return {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms),
                "segment.ms": str(self.segment_ms), "file.delete.delay.ms": str(self.file_delete_delay_ms),
                "message.timestamp.type": "LogAppendTime", "max.message.bytes": str(self.max_message_bytes)}


def partner_topics(tenant: str, partitions: int = 3, lifetime_s: int = LIFETIME_S,
                   check_interval_ms: int = RETENTION_CHECK_INTERVAL_MS, *,
                   file_delete_delay_ms: int = FILE_DELETE_DELAY_MS,
                   min_retention_ms: int = MIN_RETENTION_MS) -> list[TopicSpec]:
    """A partner tenant's request and event topics. Requests carry photos, so their messages may be large
    and stay at most ``PARTNER_REQUEST_MAX_AGE_S`` (or ``lifetime_s`` seconds, if shorter); events stay
    at most ``lifetime_s`` (pass ``PlatformSettings.job_ttl_s``). ``check_interval_ms``: the brokers'
    log.retention.check.interval.ms (bootstrap.retention_check_interval_ms reads it); the delays are
    TopicSpec's, shortened by tests only."""
    delays = {"file_delete_delay_ms": file_delete_delay_ms, "min_retention_ms": min_retention_ms}
    requests_s = min(PARTNER_REQUEST_MAX_AGE_S, lifetime_s)
    return [TopicSpec(PARTNER_REQUESTS.format(tenant=tenant), partitions, requests_s * 1000,
                      PARTNER_MESSAGE_BYTES, check_interval_ms, **delays),
            TopicSpec(PARTNER_EVENTS.format(tenant=tenant), partitions, lifetime_s * 1000,
                      check_interval_ms=check_interval_ms, **delays)]


def platform_topics(models: list[str], lifetime_s: int = LIFETIME_S, partitions: int = PARTITIONS,
                    check_interval_ms: int = RETENTION_CHECK_INTERVAL_MS, *,
                    file_delete_delay_ms: int = FILE_DELETE_DELAY_MS,
                    min_retention_ms: int = MIN_RETENTION_MS) -> list[TopicSpec]:
    """Every topic the platform needs, given the models it serves; all carry prompts, parameters or
    events of jobs, so each keeps messages at most ``lifetime_s`` (pass ``PlatformSettings.job_ttl_s``).
    ``check_interval_ms`` and the delays as for ``partner_topics``."""
    names = [JOBS_SUBMITTED, JOBS_CANCELLED, TASK_RESULTS, JOB_EVENTS, USAGE_REPORTS, DEAD_LETTERS,
             *map(model_topic, models)]
    return [TopicSpec(name, partitions, lifetime_s * 1000, check_interval_ms=check_interval_ms,
                      file_delete_delay_ms=file_delete_delay_ms, min_retention_ms=min_retention_ms)
            for name in names]
