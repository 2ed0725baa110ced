"""The gateway's FastAPI application: shared clients, who is asking, health.

Routes: jobs.py (``/v1/jobs``) and batches.py (``/v1/batches``); the web page
(``/``, from ``static/``; see docs/web.md).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from photocraft_common.accounts import Accounts, Identity
from photocraft_common.batches import BatchStore
from photocraft_common.events import EventPublisher
from photocraft_common.health import checks, probe
from photocraft_common.jobs import JobStore
from photocraft_common.kafka import make_broker
from photocraft_common.models import ModelDirectory
from photocraft_common.quotas import Quotas
from photocraft_common.redis_client import make_redis
from photocraft_common.storage import ObjectStore

from . import problems
from .problems import Problem
from .settings import GatewaySettings

STATIC = Path(__file__).with_name("static")  # the web page: index.html, app.js, style.css


@dataclass
class Platform:
    settings: GatewaySettings
    broker: KafkaBroker
    redis: Redis
    jobs: JobStore
    batches: BatchStore
    store: ObjectStore
    events: EventPublisher
    models: ModelDirectory
    accounts: Accounts
    quotas: Quotas


def platform(request: Request) -> Platform:
    return request.app.state.platform


PlatformDep = Annotated[Platform, Depends(platform)]
bearer = HTTPBearer(auto_error=False)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def identity(p: PlatformDep, request: Request, credentials: BearerDep) -> Identity:
    """The caller of a submission: the tenant of its API key, or an anonymous device
    (a new one, with a token to hand back, when it sent no valid device token)."""
    if credentials is not None:
        found = await p.accounts.by_key(credentials.credentials)
        if found is None:
            raise Problem(401, "invalid-api-key", "Invalid API key", "the API key is unknown or revoked",
                          {"WWW-Authenticate": "Bearer"})
        return found
    token = request.headers.get("x-device-token")
    return (token and p.accounts.by_device_token(token)) or p.accounts.new_device()


IdentityDep = Annotated[Identity, Depends(identity)]

health = APIRouter()


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 while Kafka, Redis and S3 answer, else 503 naming the failing ones (photocraft_common.health)."""
    status, body = await probe(request.app.state.readiness)
    return JSONResponse(body, status)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    from . import batches, jobs

    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        broker = make_broker(settings.kafka, "photocraft-gateway")
        await broker.connect()
        redis = make_redis(settings.redis)
        app.state.platform = Platform(
            settings, broker, redis, JobStore(redis, settings.job_ttl_s), BatchStore(redis, settings.job_ttl_s),
            ObjectStore(settings.s3), EventPublisher(broker), ModelDirectory(redis),
            Accounts(redis, settings.device_token_secret.get_secret_value()), Quotas(redis),
        )
        app.state.readiness = checks(kafka=broker, redis=redis, s3=app.state.platform.store.client,
                                     bucket=settings.s3.bucket)
        try:
            yield
        finally:
            await broker.stop()
            await redis.aclose()

    app = FastAPI(title="Photocraft gateway", version="0.1.0", lifespan=lifespan)
    problems.install(app)
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(health)
    app.add_api_route("/", lambda: FileResponse(STATIC / "index.html"), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
