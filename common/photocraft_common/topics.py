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

SCHEDULER_GROUP = "photocraft-scheduler"
NOTIFIER_GROUP = "photocraft-notifier"


def model_topic(model: str) -> str:
    """The topic that carries TaskDispatched messages for one Triton model."""
    return MODEL_TOPIC_PREFIX + model


def inference_group(model: str) -> str:
    """The consumer group of the gpu-inference workers serving one model."""
    return f"photocraft-inference-{model}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    retention_ms: int = 7 * 24 * 3600 * 1000


def platform_topics(models: list[str], partitions: int = 6) -> list[TopicSpec]:
    """Every topic the platform needs, given the models it serves."""
    names = [JOBS_SUBMITTED, JOBS_CANCELLED, TASK_RESULTS, JOB_EVENTS, DEAD_LETTERS, *map(model_topic, models)]
    return [TopicSpec(name, partitions) for name in names]
