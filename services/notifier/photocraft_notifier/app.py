"""The notifier's WebSocket endpoint and its Kafka consumer.

``GET /v1/jobs/{job_id}/events?token=<job token>[&after=<seq>]`` upgrades to a
WebSocket that sends the job's events from ``after`` + 1 on (all of them by
default), then live ones, and closes after the terminal one (completed,
failed or cancelled). A heartbeat message goes out when nothing happened for
a while. Close codes: 1000 the job ended, 1011 server error (reconnect with
``after``), 4401 missing token, 4403 wrong token, 4404 unknown job.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from redis.asyncio import Redis

from photocraft_common.contracts import DecodeError, JobEvent, parse
from photocraft_common.jobs import JobStore
from photocraft_common.kafka import AckPolicy, make_broker, subscriber_options, with_backoff
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import JOB_EVENTS, NOTIFIER_GROUP

from .eventlog import EventLog
from .render import TERMINAL_TYPES, render
from .settings import NotifierSettings

log = logging.getLogger("photocraft.notifier")


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    # Reads block for up to heartbeat_s; the socket must wait longer than that.
    redis = Redis.from_url(settings.redis.url, socket_timeout=settings.heartbeat_s + 10)
    events = EventLog(redis, settings.job_ttl_s)
    jobs = JobStore(redis, settings.job_ttl_s)
    store = ObjectStore(settings.s3)
    broker = make_broker(settings.kafka, "photocraft-notifier")

    @broker.subscriber(JOB_EVENTS, **subscriber_options(settings.kafka, NOTIFIER_GROUP,
                                                         AckPolicy.NACK_ON_ERROR))
    @with_backoff
    async def on_event(body: bytes) -> None:
        try:
            event = parse(JobEvent, body)
        except DecodeError:
            log.error("undecodable JobEvent skipped (%d bytes)", len(body))
            return
        await events.append(event)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            await redis.aclose()

    app = FastAPI(title="Photocraft notifier", version="0.1.0", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/v1/jobs/{job_id}/events")
    async def job_events(websocket: WebSocket, job_id: str, token: str | None = Query(None),
                         after: int = Query(0, ge=0)) -> None:
        await websocket.accept()
        token = token or websocket.headers.get("authorization", "").removeprefix("Bearer ").strip()
        record = await jobs.get(job_id)
        if not token:
            return await websocket.close(4401, "missing token")
        if record is None:
            return await websocket.close(4404, "unknown job")
        if not record.token_matches(token):
            return await websocket.close(4403, "wrong token")
        try:
            while True:
                batch = await events.read(job_id, after, int(settings.heartbeat_s * 1000))
                if not batch:
                    await websocket.send_json({"type": "heartbeat", "job_id": job_id})
                for after, event in batch:
                    message = render(after, event, store)
                    await websocket.send_json(message)
                    if message["type"] in TERMINAL_TYPES:
                        return await websocket.close(1000)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("event stream of job %s failed", job_id)
            await websocket.close(1011, "internal error; reconnect with after=<last seq>")

    return app
