"""``/v1/jobs``: submit a job, read it, cancel it.

A submission is checked in this order (photocraft_common.intake), and
nothing is stored or published unless every check passes: the operation and its parameters (422), the
caller's tier allows the operation (403), the platform serves its models
(503), the photo (413, 415, 422), the caller's daily quota (429, with
Retry-After). Then the photo goes to S3, the job record to Redis, and
JobSubmitted to Kafka.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from pydantic import BaseModel

from photocraft_common import intake
from photocraft_common.accounts import Identity
from photocraft_common.contracts import JobCancelled, ObjectRef, new_id
from photocraft_common.images import ImageInfo
from photocraft_common.intake import Admitted
from photocraft_common.jobs import JobRecord, JobStatus
from photocraft_common.kafka import publish
from photocraft_common.quotas import Grant
from photocraft_common.storage import ObjectStore
from photocraft_common.tiers import Lane, TierPolicy
from photocraft_common.topics import JOBS_CANCELLED

from .app import BearerDep, IdentityDep, Platform, PlatformDep
from .problems import Problem


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    lane: Lane
    token: str  # job-scoped secret: send it as "Authorization: Bearer <token>"
    status_url: str
    events_url: str  # the notifier's WebSocket for this job's events


class ResultView(BaseModel):
    url: str  # presigned S3 GET URL
    role: str  # "image", or "mask": the pixels the operation may have changed
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


async def admit(p: Platform, caller: Identity, operation: str, params: str | None) -> Admitted:
    return await intake.admit(p.settings.tiers[caller.tier], caller.tier, operation, params, p.models)


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, "upload-too-large", "Upload too large",
                      f"{upload.filename or 'the file'} is larger than {limit} bytes")
    return data


def check_photo(p: Platform, admitted: Admitted, data: bytes, name: str) -> ImageInfo:
    return intake.check_photo(admitted, data, name, p.settings.max_pixels)


async def take_quota(p: Platform, caller: Identity, request: Request, policy: TierPolicy, edits: int) -> Grant:
    try:
        return await intake.take_quota(p.quotas, caller, policy, edits,
                                       request.client.host if request.client else "unknown",
                                       p.settings.anonymous_ip_daily_quota)
    except Problem as problem:  # a device keeps the token it was just given
        problem.headers = {**(problem.headers or {}), **device_header(caller)}
        raise


def device_header(caller: Identity) -> dict[str, str]:
    return {"X-Device-Token": caller.issued_token} if caller.issued_token else {}


async def store_photo(p: Platform, tenant: str, job_id: str, data: bytes, info: ImageInfo) -> ObjectRef:
    return await intake.store_photo(p.store, tenant, job_id, data, info)


async def start_job(p: Platform, request: Request, caller: Identity, admitted: Admitted, job_id: str,
                    ref: ObjectRef | None, lane: Lane, batch_id: str = "") -> JobAccepted:
    """Record the job and queue it; raises KafkaError when it cannot be queued."""
    token = secrets.token_urlsafe(32)
    await intake.queue_job(p.jobs, p.events, p.broker, job_id=job_id, tenant_id=caller.tenant_id, tier=caller.tier,
                           admitted=admitted, ref=ref, lane=lane, token=token, batch_id=batch_id)
    return JobAccepted(job_id=job_id, status=JobStatus.QUEUED, lane=lane, token=token,
                       status_url=str(request.url_for("get_job", job_id=job_id)),
                       events_url=f"{p.settings.events_base_url}/v1/jobs/{job_id}/events")


def queue_unavailable() -> Problem:
    return Problem(503, "queue-unavailable", "Queue unavailable", "the job could not be queued; try again",
                   {"Retry-After": "5"})


router = APIRouter()


@router.post("/v1/jobs", status_code=202, response_model=JobAccepted)
async def submit_job(
    request: Request,
    response: Response,
    p: PlatformDep,
    caller: IdentityDep,
    operation: Annotated[str, Form(description="remove-background, enhance, retouch, restore, "
                                               "colorize or text-to-image")],
    file: Annotated[UploadFile | None, File(description="the photo")] = None,
    params: Annotated[str | None, Form(description="the operation's parameters, a JSON object")] = None,
) -> JobAccepted:
    response.headers.update(device_header(caller))
    admitted = await admit(p, caller, operation, params)
    intake.check_input(admitted, file is not None, "file")
    data = info = None
    if file is not None:
        data = await read_upload(file, p.settings.max_upload_bytes)
        info = check_photo(p, admitted, data, file.filename or "file")
    grant = await take_quota(p, caller, request, admitted.policy, 1)
    job_id = new_id()
    ref = await store_photo(p, caller.tenant_id, job_id, data, info) if data is not None else None
    try:
        return await start_job(p, request, caller, admitted, job_id, ref, intake.lane(admitted, info))
    except KafkaError:
        await p.quotas.give_back(grant)
        raise queue_unavailable() from None


async def authorize(p: Platform, request: Request, credentials, record) -> None:
    """The record's own token, or the API key or device token of its tenant; else 401/403."""
    device = request.headers.get("x-device-token")
    if credentials is None and not device:
        raise Problem(401, "unauthorized", "Missing token", "send the token as 'Authorization: Bearer <token>', "
                      "or your API key, or your device token", {"WWW-Authenticate": "Bearer"})
    if credentials is not None and record.token_matches(credentials.credentials):
        return
    owner = (await p.accounts.by_key(credentials.credentials) if credentials is not None
             else p.accounts.by_device_token(device))
    if owner is None or owner.tenant_id != record.tenant_id:
        raise Problem(403, "forbidden", "Wrong token", "the token does not give access to this resource")


async def authorized_job(p: Platform, request: Request, credentials, job_id: str) -> JobRecord:
    record = await p.jobs.get(job_id)
    if record is None:
        raise Problem(404, "job-not-found", "Job not found", f"no job {job_id}")
    await authorize(p, request, credentials, record)
    return record


@router.get("/v1/jobs/{job_id}", response_model=JobView)
async def get_job(job_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> JobView:
    return job_view(await authorized_job(p, request, credentials, job_id), p.store)


@router.delete("/v1/jobs/{job_id}", response_model=JobView)
async def cancel_job(job_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> JobView:
    """Stop a job: its waiting stages never run; a running stage's result is thrown away."""
    record = await authorized_job(p, request, credentials, job_id)
    await cancel(p, record)
    return job_view(await p.jobs.get(job_id), p.store)


async def cancel(p: Platform, record: JobRecord) -> bool:
    """Cancel ``record``'s job unless it has ended; True if it was cancelled now."""
    if not await p.jobs.set_status(record.job_id, JobStatus.CANCELLED, error_code="cancelled",
                                   error_message="cancelled by the client"):
        return False
    await publish(p.broker, JOBS_CANCELLED, JobCancelled(job_id=record.job_id, tenant_id=record.tenant_id,
                                                         reason="cancelled by the client"))
    return True


def job_view(record: JobRecord, store: ObjectStore) -> JobView:
    results = [ResultView(url=store.presigned_get_url(ref), role=ref.role or "image",
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
