"""Publishing JobEvents, the facts clients see about their jobs."""

from __future__ import annotations

import asyncio

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
        self.broker = broker

    async def emit(self, job_id: str, tenant_id: str, once: str = "", **kind) -> JobEvent:
        event_id = f"{job_id}:{once}" if once else new_id()
        event = JobEvent(event_id=event_id, job_id=job_id, tenant_id=tenant_id, time=now(), **kind)
        await publish(self.broker, JOB_EVENTS, event)
        return event


class OrderedEvents:
    """One task's events, published in the order emitted without holding the task up.

    ``emit`` returns at once; each event is published after the one before it (its own
    ``EventPublisher.emit``, so on Kafka in order). ``flush`` waits until all are published and raises
    the first publish error; call it before anything that must come after them (the TaskResult, whose
    ``completed`` event the scheduler publishes).
    """

    def __init__(self, publisher: EventPublisher) -> None:
        self._publisher = publisher
        self._last: asyncio.Task | None = None

    def emit(self, job_id: str, tenant_id: str, **kind) -> None:
        previous = self._last

        async def send() -> None:
            if previous is not None:
                await previous  # an earlier failure fails this one too: flush raises it
            await self._publisher.emit(job_id, tenant_id, **kind)
        self._last = asyncio.ensure_future(send())

    async def flush(self) -> None:
        if self._last is not None:
            await self._last
