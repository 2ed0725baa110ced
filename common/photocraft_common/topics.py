"""The Kafka topics of the platform, their partition counts and consumer groups.

Topics are created by ``photocraft-bootstrap`` (never auto-created). Every
message is keyed by its job id.
"""

from __future__ import annotations

from dataclasses import dataclass

JOBS_SUBMITTED = "photocraft.jobs.submitted"  # JobSubmitted: gateway -> scheduler
TASK_RESULTS = "photocraft.tasks.results"  # TaskResult: gpu-inference -> scheduler
JOB_EVENTS = "photocraft.jobs.events"  # JobEvent: every service -> notifier, partners
JOBS_CANCELLED = "photocraft.jobs.cancelled"  # JobCancelled: gateway -> scheduler
DEAD_LETTERS = "photocraft.deadletter"  # messages no consumer could handle, with the error in headers
MODEL_TOPIC_PREFIX = "photocraft.tasks.model."  # TaskDispatched: scheduler -> gpu-inference
PARTITIONS = 6  # of every platform topic
MODEL_TOPIC_PARTITIONS = PARTITIONS  # the scheduler places tasks on them itself (fairshare.py)

# Partners: PartnerRequest in, JobEvent out, one pair of topics per partner tenant
# (made by `photocraft-tenants partner`), so Kafka ACLs can tell partners apart.
PARTNER_REQUESTS = "photocraft.partner.{tenant}.requests"
PARTNER_EVENTS = "photocraft.partner.{tenant}.events"
PARTNER_MESSAGE_BYTES = 16 * 1024 * 1024  # the largest request: a photo of up to 15 MiB

SCHEDULER_GROUP = "photocraft-scheduler"
NOTIFIER_GROUP = "photocraft-notifier"


def model_topic(model: str) -> str:
    """The topic that carries TaskDispatched messages for one Triton model."""
    return MODEL_TOPIC_PREFIX + model


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
]


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int = 7 * 24 * 3600 * 1000
    max_message_bytes: int = 1024 * 1024


def partner_topics(tenant: str, partitions: int = 3) -> list[TopicSpec]:
    """A partner tenant's request and event topics (requests carry photos, so their messages may be large)."""
    return [TopicSpec(PARTNER_REQUESTS.format(tenant=tenant), partitions, max_message_bytes=PARTNER_MESSAGE_BYTES),
            TopicSpec(PARTNER_EVENTS.format(tenant=tenant), partitions)]


def platform_topics(models: list[str], partitions: int = PARTITIONS) -> list[TopicSpec]:
    """Every topic the platform needs, given the models it serves."""
    names = [JOBS_SUBMITTED, JOBS_CANCELLED, TASK_RESULTS, JOB_EVENTS, DEAD_LETTERS, *map(model_topic, models)]
    return [TopicSpec(name, partitions) for name in names]
