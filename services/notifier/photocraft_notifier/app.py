"""The notifier's app: WebSocket feeds of job events, fed by its Kafka consumer.

Three feeds, each sending the logged events after ``after`` (all of them by
default), then live ones (protocol: docs/events.md):

- ``/v1/jobs/{job_id}/events?token=<job token>&after=<seq>``: one job; closes
  after its terminal event (completed, failed, cancelled);
- ``/v1/batches/{batch_id}/events?token=<batch token>&after=<seq>``: a batch's
  progress; closes once every job of the batch ended;
- ``/v1/events?api_key=<key>|device_token=<token>&after=<cursor>``: every event
  of the caller's tenant, positioned by ``cursor``; stays open.

A job or batch feed opens with the record's own token, an API key of its tenant
(``api_key=``) or a device token of its tenant (``device_token=``), as the
gateway's reads do (photocraft_common.access). Credentials may also come as
``Authorization: Bearer`` (token, API key) or ``X-Device-Token`` headers. A
heartbeat goes out when nothing happened for ``heartbeat_s``. Close codes: 1000
the job (batch) ended, 1011 server error, 4008 the client fell behind (after a
``resync`` message), 4401 missing (or, on the tenant feed, unknown) credentials,
4404 unknown job (batch) or one the credentials do not open (checked in that
order; never told apart). After any close but 1000 and 44xx,
reconnect with ``after`` = the last ``seq`` (``cursor``) seen.

Parts: deps.py (what one process holds), consumer.py (Kafka to the event log),
hub.py (the live feed, fanned out in the process), relay.py (one feed to one
WebSocket), routes.py (the endpoints); ``/healthz`` and ``/readyz`` (Kafka, Redis,
S3) are photocraft_common.health_routes. Prometheus' ``/metrics`` is not on this app
(404 here) but on ``PHOTOCRAFT_METRICS_PORT`` (photocraft_common.metrics.server).
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI

from photocraft_common import health_routes, metrics
from photocraft_common.background import Background, every
from photocraft_common.health import VERSION, checks
from photocraft_common.metrics import LAG_INTERVAL_S, lag_refresher

from . import routes
from .consumer import subscribe
from .deps import Notifier
from .eventlog import TRIM_INTERVAL_S
from .settings import NotifierSettings


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Serve /metrics on its own port (metrics.server), follow the live feed and trim tenant logs by age
    (eventlog.py), then consume Kafka; on shutdown stop consuming, then stop the rest."""
    notifier: Notifier = app.state.notifier
    async with metrics.server(notifier.settings.metrics_host, notifier.settings.metrics_port):
        background = Background()
        feed_ready = asyncio.Event()
        background.start(notifier.hub.run(feed_ready), "live event feed")
        await asyncio.wait_for(feed_ready.wait(), 30)
        background.start(every(TRIM_INTERVAL_S, notifier.events.trim_due, "tenant log trim"), "tenant log trim")
        await notifier.broker.start()
        background.start(every(LAG_INTERVAL_S, lag_refresher(notifier.broker), "consumer lag"), "consumer lag")
        try:
            yield
        finally:
            await notifier.broker.stop()
            await background.stop()
            await notifier.redis.aclose()
            await notifier.engine.dispose()


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    notifier = Notifier.create(settings)
    subscribe(notifier)
    app = FastAPI(title="Photocraft notifier", version=VERSION, lifespan=lifespan)
    app.state.notifier = notifier
    app.state.readiness = checks(kafka=notifier.broker, redis=notifier.redis, s3=notifier.store.client,
                                 bucket=settings.s3.bucket, postgres=notifier.engine)
    app.include_router(health_routes.router)
    app.include_router(routes.router)
    metrics.instrument(app)
    return app
