"""The gateway's FastAPI application: its lifespan (the platform's clients) and its routes.

Routes: jobs.py (``/v1/jobs``), batches.py (``/v1/batches``), usage.py (``/v1/usage``), models.py (``/v1/models``),
``/healthz`` and ``/readyz`` (photocraft_common.health_routes) and the web page (``/``, from ``static/``; see
docs/web.md). Prometheus' ``/metrics`` is not among them: it is served on ``PHOTOCRAFT_METRICS_PORT``
(photocraft_common.metrics.server) while the app runs.
What the routes depend on is in deps.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from photocraft_common import health_routes, metrics
from photocraft_common.database import make_engine
from photocraft_common.expiry import ExpiryIndex
from photocraft_common.health import VERSION, checks
from photocraft_common.kafka import make_broker
from photocraft_common.redis_client import make_redis
from photocraft_common.storage import ObjectStore

from . import batches, jobs, models, problems, usage
from .deps import Platform
from .ratelimit import RateLimitMiddleware
from .settings import GatewaySettings

STATIC = Path(__file__).with_name("static")  # the web page: index.html, app.js, style.css

Connect = Callable[[GatewaySettings], AbstractAsyncContextManager[Platform]]


@asynccontextmanager
async def connect(settings: GatewaySettings) -> AsyncIterator[Platform]:
    """The platform on real clients: a connected Kafka producer, Redis, S3 and PostgreSQL's engine (one per
    process); readiness checks all four. Closes them on exit. Raises aiokafka's KafkaConnectionError
    when Kafka cannot be reached, DatabaseMissing when no database is configured."""
    engine = make_engine(settings.database)  # first: DatabaseMissing before anything is opened
    broker = make_broker(settings.kafka, "photocraft-gateway")
    await broker.connect()
    redis = make_redis(settings.redis)
    store = ObjectStore(settings.s3, ExpiryIndex(redis, settings.job_ttl_s))  # objects indexed for purge
    try:
        yield Platform.build(settings, broker, redis, store,
                             checks(kafka=broker, redis=redis, s3=store.client, bucket=settings.s3.bucket,
                                    postgres=engine), engine)
    finally:
        await broker.stop()
        await redis.aclose()
        await engine.dispose()


def create_app(settings: GatewaySettings | None = None, connect: Connect = connect) -> FastAPI:
    """The gateway's app. ``connect(settings)`` opens the platform for the app's lifetime (tests pass
    one on in-process fakes); its ``readiness`` becomes ``app.state.readiness``."""
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with metrics.server(settings.metrics_host, settings.metrics_port), connect(settings) as platform:
            app.state.platform, app.state.readiness = platform, platform.readiness
            yield

    app = FastAPI(title="Photocraft gateway", version=VERSION, lifespan=lifespan)
    problems.install(app, {"/readyz": {"503": {"description": "a check failed (the body names it)",
                                               "content": {"application/json": {"schema": {"type": "object"}}}}}})
    app.add_middleware(RateLimitMiddleware)  # requests per client on /v1/ (ratelimit.py)
    metrics.instrument(app)  # counts requests; outside the rate limit, so its 429s are counted too
    app.include_router(jobs.router)
    app.include_router(batches.router)
    app.include_router(usage.router)
    app.include_router(models.router)
    app.include_router(health_routes.router, responses=problems.responses(404, 405, 429, 500))
    app.add_api_route("/", lambda: FileResponse(STATIC / "index.html"), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
