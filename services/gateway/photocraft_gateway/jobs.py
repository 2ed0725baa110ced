"""``/v1/jobs``: submit a job, read it, cancel it.

A submission goes through photocraft_common.intake (``Intake.submit``), and nothing is stored or
published unless every check passes: the operation and its parameters (422), the caller's tier allows
the operation (403), the platform serves its models (503), the photo (413, 415, 422), the caller's
daily quota (429, with Retry-After). Then the photo goes to S3, the job record to Redis, and
JobSubmitted to Kafka (503 queue-unavailable when Kafka does not take it).
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile

from photocraft_common.guards import clean
from photocraft_common.intake import Upload, device_header

from .deps import BearerDep, IdentityDep, PlatformDep, authorized, cancel, client_ip, queueing, read_upload
from .problems import form_only, responses
from .views import JobAccepted, JobView, job_accepted, job_view

router = APIRouter()
SUBMIT_ERRORS = responses(400, 401, 403, 404, 405, 413, 415, 422, 429, 500, 503)
READ_ERRORS = responses(401, 403, 404, 405, 410, 422, 429, 500, 503)


@router.post("/v1/jobs", status_code=202, response_model=JobAccepted, responses=SUBMIT_ERRORS,
             dependencies=[Depends(form_only)])
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
    photo = (Upload(clean(file.filename or "file", 100), partial(read_upload, file, p.settings.max_upload_bytes))
             if file is not None else None)
    with queueing():
        job = await p.intake.submit(caller, operation, params, photo, field="file", client_ip=client_ip(request))
    return job_accepted(p, request, job)


@router.get("/v1/jobs/{job_id}", response_model=JobView, responses=READ_ERRORS)
async def get_job(job_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> JobView:
    return job_view(await authorized(p, request, credentials, await p.jobs.lookup(job_id), "job", job_id), p.store)


@router.delete("/v1/jobs/{job_id}", response_model=JobView, responses=READ_ERRORS)
async def cancel_job(job_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> JobView:
    """Stop a job: its waiting stages never run; a running stage's result is thrown away."""
    record = await authorized(p, request, credentials, await p.jobs.lookup(job_id), "job", job_id)
    await cancel(p, record)
    return job_view(await p.jobs.get(job_id), p.store)
