"""Publishing JobEvents, the facts clients see about their jobs."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from .contracts import JobEvent, new_id, now
from .kafka import publish
from .topics import JOB_EVENTS


class EventPublisher:
    """Writes JobEvents to ``photocraft.jobs.events``, keyed by job id.

    ``emit(job_id, tenant_id, progress=Progress(stage="segment", percent=40))``
    sets exactly one of JobEvent's ``kind`` fields. Events that happen once
    per job (received, queued, completed, ...) get a deterministic
    ``event_id`` from ``once``, so publishing them again after a crash is
    harmless: consumers drop duplicates by id.
    """

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def emit(self, job_id: str, tenant_id: str, once: str = "", **kind) -> JobEvent:
        event_id = f"{job_id}:{once}" if once else new_id()
        event = JobEvent(event_id=event_id, job_id=job_id, tenant_id=tenant_id, time=now(), **kind)
        await publish(self._broker, JOB_EVENTS, event)
        return event
