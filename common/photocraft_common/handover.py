"""Handing recorded jobs to the scheduler, and ending here those it will never hear of.

``Handover.record`` writes a job's record (queued, with its edit of the caller's daily quota);
``Handover.one`` and ``Handover.batch`` then emit each job's ``received`` event and publish its
JobSubmitted. When that fails (Kafka refuses it), the job is ended here, and the error propagates
(the gateway answers 503 ``queue-unavailable``):

- a single job fails with code ``not-published``, and its edit goes back to the quota;
- a batch, part-way: its jobs not yet published fail ``not-published`` and are counted in the batch as
  ended; those already published are cancelled (the scheduler drops them and announces their end, which
  counts them in the batch, so the batch's counts reach its total and its last ``batch_progress`` event
  says so); every edit of the jobs ended here goes back. Each job of the batch keeps its record, so the
  batch can be read and cancelled like any other.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from .batches import BatchStore
from .contracts import BatchProgress, JobCancelled, JobSubmitted, ObjectRef, Received, now
from .events import EventPublisher
from .jobs import JobStatus, JobStore, job_key
from .kafka import publish
from .quotas import Charge, Quotas
from .telemetry import current_traceparent, tracer
from .topics import JOBS_CANCELLED, JOBS_SUBMITTED

log = logging.getLogger("photocraft.handover")

NOT_PUBLISHED = "not-published"  # the error code of a job Kafka did not take
NOT_QUEUED = "not-queued"  # why its edit went back (the record's edit_returned)
JOB_NOT_QUEUED = "the job could not be queued; submit it again"
BATCH_NOT_QUEUED = "the batch could not be queued in full; submit it again"


@dataclass(frozen=True)
class NewJob:
    """A job as the intake hands it over: its JobSubmitted's fields and its edit of the daily quota."""

    job_id: str
    tenant_id: str
    tier: str
    operation: str
    params_json: str
    input: ObjectRef | None
    lane: str
    charge: Charge = Charge()
    batch_id: str = ""


class Handover:
    """Records and publishes jobs (see the module); ``batches`` is needed by ``batch`` only."""

    def __init__(self, jobs: JobStore, events: EventPublisher, broker: KafkaBroker, quotas: Quotas,
                 batches: BatchStore | None = None) -> None:
        self._jobs, self._events, self._broker, self._quotas, self._batches = jobs, events, broker, quotas, batches

    async def record(self, job: NewJob) -> str:
        """Record ``job`` as queued; returns its own secret (the record keeps its sha256). The record also
        keeps the context of the span ``job <operation>`` begun here, a child of the current one (the upload
        request, a partner's request), which every later span of the job descends from."""
        token = secrets.token_urlsafe(32)
        attributes = {"photocraft.job_id": job.job_id, "photocraft.tenant": job.tenant_id,
                      "photocraft.operation": job.operation, "photocraft.lane": job.lane,
                      "photocraft.batch_id": job.batch_id}
        with tracer.start_as_current_span(f"job {job.operation}", attributes=attributes):
            await self._jobs.create(job.job_id, job.tenant_id, job.operation, job.params_json, job.input, token,
                                    job.tier, job.lane, job.batch_id, charge=job.charge,
                                    traceparent=current_traceparent())
        return token

    async def one(self, job: NewJob) -> None:
        """Publish the recorded ``job``; when that raises, the job fails (its edit given back) and the error
        propagates."""
        try:
            await self._publish(job)
        except Exception:
            await self._not_published(job, JOB_NOT_QUEUED)
            raise

    async def batch(self, batch_id: str, jobs: Sequence[NewJob]) -> None:
        """Publish the recorded ``jobs`` of the batch ``batch_id`` in order; when one raises, the batch ends
        as the module says and the error propagates."""
        published = 0
        try:
            for job in jobs:
                await self._publish(job)
                published += 1
        except Exception:
            log.warning("batch %s: %d of %d jobs published; ending the batch", batch_id, published, len(jobs))
            for job in jobs[published:]:
                await self._not_published(job, BATCH_NOT_QUEUED)
                await self._count(batch_id, job)
            for job in jobs[:published]:  # counted by the scheduler, after those above
                await self._cancel(job)
            raise

    async def _publish(self, job: NewJob) -> None:
        await self._events.emit(job.job_id, job.tenant_id, once="received",
                                received=Received(operation=job.operation, input=job.input))
        await publish(self._broker, JOBS_SUBMITTED, JobSubmitted(
            job_id=job.job_id, tenant_id=job.tenant_id, operation=job.operation, params_json=job.params_json,
            input=job.input, submitted_at=now(), tier=job.tier, lane=job.lane, batch_id=job.batch_id))

    async def _not_published(self, job: NewJob, message: str) -> None:
        await self._jobs.set_status(job.job_id, JobStatus.FAILED, error_code=NOT_PUBLISHED, error_message=message)
        await self._quotas.return_edit(job_key(job.job_id), job.charge, NOT_QUEUED)

    async def _cancel(self, job: NewJob) -> None:
        """Cancel a published job of a batch that could not be published in full, unless it has ended."""
        if not await self._jobs.set_status(job.job_id, JobStatus.CANCELLED, error_code="cancelled",
                                           error_message=BATCH_NOT_QUEUED):
            return
        await self._quotas.return_edit(job_key(job.job_id), job.charge, NOT_QUEUED)
        with suppress(KafkaError):  # the scheduler also sees the status when it reads the job's JobSubmitted
            await publish(self._broker, JOBS_CANCELLED, JobCancelled(job_id=job.job_id, tenant_id=job.tenant_id,
                                                                     reason=BATCH_NOT_QUEUED))

    async def _count(self, batch_id: str, job: NewJob) -> None:
        """Count the unpublished ``job`` as ended in its batch, and say so in a ``batch_progress`` event when
        Kafka takes it (a later count by the scheduler, of a cancelled job, says it again)."""
        batch = await self._batches.job_ended(batch_id, job.job_id, succeeded=False)
        if batch is not None:
            with suppress(KafkaError):
                await self._events.emit(batch_id, batch.tenant_id, once=f"progress:{batch.done + batch.failed}",
                                        batch_progress=BatchProgress(done=batch.done, failed=batch.failed,
                                                                     total=batch.total))
