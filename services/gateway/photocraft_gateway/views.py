"""The gateway's response bodies (documented in docs/api.md) and how records become them."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from pydantic import BaseModel

from photocraft_common.batches import BatchRecord
from photocraft_common.intake import Queued, QueuedBatch
from photocraft_common.jobs import JobRecord, JobStatus
from photocraft_common.storage import ObjectStore
from photocraft_common.tiers import Lane

from .deps import Platform


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    lane: Lane
    token: str  # job-scoped secret: send it as "Authorization: Bearer <token>"
    status_url: str
    events_url: str  # the notifier's WebSocket for this job's events


class ResultView(BaseModel):
    url: str  # presigned S3 GET URL
    role: str  # "image"; "mask": the pixels the operation may have changed; "report": restore's JobReport (JSON)
    content_type: str
    width: int
    height: int
    size_bytes: int


class JobView(BaseModel):
    job_id: str
    operation: str
    status: JobStatus
    tier: str
    lane: str
    batch_id: str | None = None
    created_at: datetime
    updated_at: datetime
    result_url: str | None = None  # the result image's URL, when completed
    results: list[ResultView] = []
    warnings: list[str] = []
    error: dict[str, str] | None = None  # code, message, stage; when failed


class BatchAccepted(BaseModel):
    batch_id: str
    total: int
    token: str  # batch-scoped secret: reads and cancels the batch
    status_url: str
    events_url: str  # the notifier's WebSocket for the batch's progress
    jobs: list[JobAccepted]


class BatchView(BaseModel):
    batch_id: str
    operation: str
    total: int
    done: int  # jobs completed
    failed: int  # jobs failed or cancelled
    jobs: dict[str, JobStatus]


def job_accepted(p: Platform, request: Request, job: Queued) -> JobAccepted:
    return JobAccepted(job_id=job.job_id, status=JobStatus.QUEUED, lane=job.lane, token=job.token,
                       status_url=str(request.url_for("get_job", job_id=job.job_id)),
                       events_url=f"{p.settings.events_base_url}/v1/jobs/{job.job_id}/events")


def batch_accepted(p: Platform, request: Request, batch: QueuedBatch) -> BatchAccepted:
    return BatchAccepted(batch_id=batch.batch_id, total=len(batch.jobs), token=batch.token,
                         jobs=[job_accepted(p, request, job) for job in batch.jobs],
                         status_url=str(request.url_for("get_batch", batch_id=batch.batch_id)),
                         events_url=f"{p.settings.events_base_url}/v1/batches/{batch.batch_id}/events")


def job_view(record: JobRecord, store: ObjectStore) -> JobView:
    results = [ResultView(url=store.presigned_get_url(ref, record.expires_at or None), role=ref.role or "image",
                          content_type=ref.content_type, width=ref.width, height=ref.height,
                          size_bytes=ref.size_bytes)
               for ref in record.results] if record.status is JobStatus.COMPLETED else []
    error = ({"code": record.error_code, "message": record.error_message, "stage": record.error_stage}
             if record.status is JobStatus.FAILED else None)
    return JobView(
        job_id=record.job_id, operation=record.operation, status=record.status, tier=record.tier,
        lane=record.lane, batch_id=record.batch_id or None,
        created_at=datetime.fromtimestamp(record.created_at, UTC),
        updated_at=datetime.fromtimestamp(record.updated_at, UTC),
        result_url=next((r.url for r in results if r.role == "image"), None), results=results,
        warnings=record.warnings, error=error,
    )


async def batch_view(p: Platform, batch: BatchRecord) -> BatchView:
    records = [await p.jobs.get(job_id) for job_id in batch.job_ids]
    statuses = {record.job_id: record.status for record in records if record is not None}  # None: past its lifetime
    return BatchView(batch_id=batch.batch_id, operation=batch.operation, total=batch.total, done=batch.done,
                     failed=batch.failed, jobs=statuses)
