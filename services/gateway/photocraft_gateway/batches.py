"""``/v1/batches``: one operation on up to 50 photos at once; one job per photo.

Every photo is checked before any is stored (photocraft_common.intake, ``Intake.submit_batch``); the
caller's quota is charged one edit per photo. The batch's own token (or the tenant's API key or device
token) reads it and cancels it; its WebSocket carries BatchProgress events.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile

from photocraft_common.guards import clean
from photocraft_common.intake import Upload, device_header

from .deps import BearerDep, IdentityDep, PlatformDep, authorized, cancel, client_ip, queueing, read_upload
from .jobs import READ_ERRORS, SUBMIT_ERRORS
from .problems import Problem, form_only
from .settings import GatewaySettings
from .views import BatchAccepted, BatchView, batch_accepted, batch_view

router = APIRouter()


def uploads(files: list[UploadFile], settings: GatewaySettings) -> list[Upload]:
    """The batch's photos, read in turn; reading raises Problem 413 for a file over ``max_upload_bytes``
    or once the files read add up to more than ``max_batch_bytes``."""
    total = 0

    async def read(upload: UploadFile) -> bytes:
        nonlocal total
        data = await read_upload(upload, settings.max_upload_bytes)
        total += len(data)
        if total > settings.max_batch_bytes:
            raise Problem(413, "upload-too-large", "Upload too large",
                          f"the batch is larger than {settings.max_batch_bytes} bytes")
        return data

    return [Upload(f"photo {n} ({clean(upload.filename or 'no name', 100)})", partial(read, upload))
            for n, upload in enumerate(files, 1)]


@router.post("/v1/batches", status_code=202, response_model=BatchAccepted, responses=SUBMIT_ERRORS,
             dependencies=[Depends(form_only)])
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
    with queueing():
        batch = await p.intake.submit_batch(caller, operation, params, uploads(files, p.settings),
                                            client_ip=client_ip(request))
    return batch_accepted(p, request, batch)


@router.get("/v1/batches/{batch_id}", response_model=BatchView, responses=READ_ERRORS)
async def get_batch(batch_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> BatchView:
    return await batch_view(p, await authorized(p, request, credentials, await p.batches.lookup(batch_id),
                                                "batch", batch_id))


@router.delete("/v1/batches/{batch_id}", response_model=BatchView, responses=READ_ERRORS)
async def cancel_batch(batch_id: str, request: Request, p: PlatformDep, credentials: BearerDep) -> BatchView:
    """Cancel every job of the batch that has not ended."""
    batch = await authorized(p, request, credentials, await p.batches.lookup(batch_id), "batch", batch_id)
    for job_id in batch.job_ids:
        if (record := await p.jobs.get(job_id)) is not None:  # None: past its lifetime
            await cancel(p, record)
    return await batch_view(p, batch)
