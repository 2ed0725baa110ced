"""The gateway's HTTP API: submit a job, read its status.

``POST /v1/jobs`` checks the upload, stores it in S3, records the job in
Redis and publishes JobSubmitted to Kafka, then answers 202. Nothing is stored
or published for a request that fails its checks.
"""

from __future__ import annotations

import hashlib
import secrets
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.kafka import KafkaBroker
from pydantic import BaseModel
from redis.asyncio import Redis

from photocraft_common.contracts import JobSubmitted, Received, new_id, now
from photocraft_common.events import EventPublisher
from photocraft_common.images import InvalidImage, probe
from photocraft_common.jobs import JobRecord, JobStatus, JobStore
from photocraft_common.kafka import make_broker, publish
from photocraft_common.models import ModelDirectory
from photocraft_common.operations import (
    MEGAPIXEL,
    UnknownOperation,
    ValidationError,
    get_operation,
    parse_params,
)
from photocraft_common.storage import ObjectStore, input_key
from photocraft_common.topics import JOBS_SUBMITTED

from . import problems
from .problems import Problem
from .settings import GatewaySettings

ANONYMOUS_TENANT = "anonymous"


@dataclass
class Platform:
    settings: GatewaySettings
    broker: KafkaBroker
    redis: Redis
    jobs: JobStore
    store: ObjectStore
    events: EventPublisher
    models: ModelDirectory


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
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
    created_at: datetime
    updated_at: datetime
    result_url: str | None = None  # the result image's URL, when completed
    results: list[ResultView] = []
    warnings: list[str] = []
    error: dict[str, str] | None = None  # code, message, stage; when failed


def platform(request: Request) -> Platform:
    return request.app.state.platform


PlatformDep = Annotated[Platform, Depends(platform)]


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, "upload-too-large", "Upload too large",
                      f"the file is larger than {limit} bytes")
    return data


router = APIRouter()
bearer = HTTPBearer(auto_error=False)


def validation_detail(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'params'}: {e['msg']}" for e in exc.errors())


@router.post("/v1/jobs", status_code=202, response_model=JobAccepted)
async def submit_job(
    request: Request,
    p: PlatformDep,
    operation: Annotated[str, Form(description="remove-background, enhance, retouch, restore, "
                                               "colorize or text-to-image")],
    file: Annotated[UploadFile | None, File(description="the photo")] = None,
    params: Annotated[str | None, Form(description="the operation's parameters, a JSON object")] = None,
) -> JobAccepted:
    try:
        parsed = parse_params(operation, params)
    except UnknownOperation as exc:
        raise Problem(422, "unknown-operation", "Unknown operation", str(exc)) from None
    except ValidationError as exc:
        raise Problem(422, "invalid-params", "Invalid parameters", validation_detail(exc)) from None
    except ValueError as exc:
        raise Problem(422, "invalid-params", "Invalid parameters", str(exc)) from None
    op = get_operation(operation)
    if op.takes_input and file is None:
        raise Problem(422, "missing-file", "Missing file", f"{operation} needs an image in the 'file' field")
    if not op.takes_input and file is not None:
        raise Problem(422, "unexpected-file", "Unexpected file", f"{operation} takes no file")
    available = await p.models.available()
    if not available:
        raise Problem(503, "inference-unavailable", "Inference unavailable",
                      "no model is being served right now (the inference servers are starting or down); "
                      "retry shortly", {"Retry-After": "10"})
    missing = op.missing_models(parsed, available)
    if missing:
        raise Problem(503, "model-not-installed", "Model not installed",
                      f"{operation} needs {', '.join(missing)}, which this platform does not serve now "
                      "(see docs/models.md to install it)")

    job_id, token, tenant = new_id(), secrets.token_urlsafe(32), ANONYMOUS_TENANT
    ref = None
    if file is not None:
        data = await read_upload(file, p.settings.max_upload_bytes)
        try:
            info = probe(data, p.settings.max_pixels)
        except InvalidImage as exc:
            raise Problem(415, "unsupported-image", "Not a supported image", str(exc)) from None
        limit = op.max_input_megapixels(parsed)
        if info.width * info.height > limit * MEGAPIXEL:
            raise Problem(422, "image-too-large", "Image too large for these parameters",
                          f"{info.width}x{info.height} is over {limit} MP, the limit of {operation} "
                          "with these parameters")
        ref = await p.store.put(input_key(tenant, job_id, info.extension), data, info.mime_type,
                                info.width, info.height)
        ref.content_id, ref.role = hashlib.sha256(data).hexdigest(), "image"

    params_json = parsed.model_dump_json()
    await p.jobs.create(job_id, tenant, operation, params_json, ref, token)
    try:
        received = Received(operation=operation, input=ref)
        await p.events.emit(job_id, tenant, once="received", received=received)
        await publish(p.broker, JOBS_SUBMITTED, JobSubmitted(
            job_id=job_id, tenant_id=tenant, operation=operation, params_json=params_json,
            input=ref, submitted_at=now()))
    except KafkaError as exc:
        await p.jobs.set_status(job_id, JobStatus.FAILED, error_code="not-published",
                                error_message=str(exc))
        raise Problem(503, "queue-unavailable", "Queue unavailable",
                      "the job could not be queued; try again", {"Retry-After": "5"}) from None

    return JobAccepted(
        job_id=job_id, status=JobStatus.QUEUED, token=token,
        status_url=str(request.url_for("get_job", job_id=job_id)),
        events_url=f"{p.settings.events_base_url}/v1/jobs/{job_id}/events",
    )


@router.get("/v1/jobs/{job_id}", response_model=JobView)
async def get_job(
    job_id: str,
    p: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> JobView:
    if credentials is None:
        raise Problem(401, "unauthorized", "Missing token",
                      "send the job's token as 'Authorization: Bearer <token>'",
                      {"WWW-Authenticate": "Bearer"})
    record = await p.jobs.get(job_id)
    if record is None:
        raise Problem(404, "job-not-found", "Job not found", f"no job {job_id}")
    if not record.token_matches(credentials.credentials):
        raise Problem(403, "forbidden", "Wrong token", "the token does not belong to this job")
    return job_view(record, p.store)


def job_view(record: JobRecord, store: ObjectStore) -> JobView:
    results = [ResultView(url=store.presigned_get_url(ref), role=ref.role or "image",
                          content_type=ref.content_type, width=ref.width, height=ref.height,
                          size_bytes=ref.size_bytes)
               for ref in record.results] if record.status is JobStatus.COMPLETED else []
    error = ({"code": record.error_code, "message": record.error_message, "stage": record.error_stage}
             if record.status is JobStatus.FAILED else None)
    return JobView(
        job_id=record.job_id, operation=record.operation, status=record.status,
        created_at=datetime.fromtimestamp(record.created_at, UTC),
        updated_at=datetime.fromtimestamp(record.updated_at, UTC),
        result_url=next((r.url for r in results if r.role == "image"), None), results=results,
        warnings=record.warnings, error=error,
    )


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(p: PlatformDep) -> dict[str, str]:
    await p.redis.ping()
    return {"status": "ready"}


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        broker = make_broker(settings.kafka, "photocraft-gateway")
        await broker.connect()
        redis = Redis.from_url(settings.redis.url)
        app.state.platform = Platform(
            settings, broker, redis, JobStore(redis, settings.job_ttl_s),
            ObjectStore(settings.s3), EventPublisher(broker), ModelDirectory(redis),
        )
        try:
            yield
        finally:
            await broker.stop()
            await redis.aclose()

    app = FastAPI(title="Photocraft gateway", version="0.1.0", lifespan=lifespan)
    problems.install(app)
    app.include_router(router)
    return app
