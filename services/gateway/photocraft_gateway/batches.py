"""``/v1/batches``: one operation on up to 50 photos at once; one job per photo.

Every photo is checked before any is stored; the caller's quota is charged
one edit per photo. The batch's own token (or the tenant's API key or device
token) reads it and cancels it; its WebSocket carries BatchProgress events.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import BaseModel

from photocraft_common.batches import BatchRecord
from photocraft_common.contracts import new_id
from photocraft_common.jobs import JobStatus
from photocraft_common.tiers import Lane

from .app import BearerDep, IdentityDep, Platform, PlatformDep
from .jobs import (
    JobAccepted,
    admit,
    authorize,
    cancel,
    check_photo,
    device_header,
    queue_unavailable,
    read_upload,
    start_job,
    store_photo,
    take_quota,
)
from .problems import Problem

MAX_BATCH = 50  # photos; a tier may allow fewer


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


router = APIRouter()


@router.post("/v1/batches", status_code=202, response_model=BatchAccepted)
async def submit_batch(
    request: Request,
    response: Response,
    p: PlatformDep,
    caller: IdentityDep,
    operation: Annotated[str, Form(description="the operation for every photo")],
    files: Annotated[list[UploadFile], File(description="the photos, up to 50")],
    params: Annotated[str | None, Form(description="the operation's parameters, a JSON object")] = None,
) -> BatchAccepted:
    response.headers.update(device_header(caller))
    admitted = await admit(p, caller, operation, params)
    if not admitted.operation.takes_input:
        raise Problem(422, "unexpected-file", "Not for batches", f"{operation} takes no photo")
    limit = min(MAX_BATCH, admitted.policy.max_batch)
    if len(files) > limit:
        raise Problem(422, "batch-too-large", "Too many photos",
                      f"{len(files)} photos; a batch of the {caller.tier} tier holds at most {limit}")
    photos, total_bytes = [], 0
    for n, upload in enumerate(files, 1):
        data = await read_upload(upload, p.settings.max_upload_bytes)
        total_bytes += len(data)
        if total_bytes > p.settings.max_batch_bytes:
            raise Problem(413, "upload-too-large", "Upload too large",
                          f"the batch is larger than {p.settings.max_batch_bytes} bytes")
        photos.append((data, check_photo(p, admitted, data, f"photo {n} ({upload.filename})")))
    grant = await take_quota(p, caller, request, admitted.policy, len(photos))

    batch_id, token = new_id(), secrets.token_urlsafe(32)
    job_ids = [new_id() for _ in photos]
    await p.batches.create(batch_id, caller.tenant_id, operation, job_ids, token)
    accepted = []
    try:
        for job_id, (data, info) in zip(job_ids, photos, strict=True):
            ref = await store_photo(p, caller.tenant_id, job_id, data, info)
            accepted.append(await start_job(p, request, caller, admitted, job_id, ref, Lane.HEAVY, batch_id))
    except KafkaError:
        if not accepted:
            await p.quotas.give_back(grant)
        raise queue_unavailable() from None
    return BatchAccepted(batch_id=batch_id, total=len(job_ids), token=token, jobs=accepted,
                         status_url=str(request.url_for("get_batch", batch_id=batch_id)),
                         events_url=f"{p.settings.events_base_url}/v1/batches/{batch_id}/events")


async def authorized_batch(p: Platform, request: Request, credentials, batch_id: str) -> BatchRecord:
    record = await p.batches.get(batch_id)
    if record is None:
        raise Problem(404, "batch-not-found", "Batch not found", f"no batch {batch_id}")
    await authorize(p, request, credentials, record)
    return record


async def batch_view(p: Platform, batch: BatchRecord) -> BatchView:
    statuses = {job_id: (await p.jobs.get(job_id)).status for job_id in batch.job_ids}
    return BatchView(batch_id=batch.batch_id, operation=batch.operation, total=batch.total, done=batch.done,
                     failed=batch.failed, jobs=statuses)


@router.get("/v1/batches/{batch_id}", response_model=BatchView)
async def get_batch(batch_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> BatchView:
    return await batch_view(p, await authorized_batch(p, request, credentials, batch_id))


@router.delete("/v1/batches/{batch_id}", response_model=BatchView)
async def cancel_batch(batch_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> BatchView:
    """Cancel every job of the batch that has not ended."""
    batch = await authorized_batch(p, request, credentials, batch_id)
    for job_id in batch.job_ids:
        await cancel(p, await p.jobs.get(job_id))
    return await batch_view(p, batch)
