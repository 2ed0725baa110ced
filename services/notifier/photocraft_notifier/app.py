"""The notifier's WebSocket endpoints and its Kafka consumer.

``GET /v1/jobs/{job_id}/events?token=<job token>[&after=<seq>]`` upgrades to a
WebSocket that sends the job's events from ``after`` + 1 on (all of them by
default), then live ones, and closes after the terminal one (completed,
failed or cancelled). ``/v1/batches/{batch_id}/events?token=<batch token>``
does the same for a batch's progress events, closing once every job ended.
A heartbeat message goes out when nothing happened for a while. Close codes:
1000 the job (batch) ended, 1011 server error (reconnect with ``after``),
4401 missing token, 4403 wrong token, 4404 unknown job (batch).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from faststream.kafka.annotations import KafkaMessage
from redis.asyncio import Redis

from photocraft_common.batches import BatchStore
from photocraft_common.contracts import JobEvent, parse
from photocraft_common.jobs import JobStore
from photocraft_common.kafka import AckPolicy, handle_or_dead_letter, make_broker, subscriber_options
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
    batches = BatchStore(redis, settings.job_ttl_s)
    store = ObjectStore(settings.s3)
    broker = make_broker(settings.kafka, "photocraft-notifier")

    @broker.subscriber(JOB_EVENTS, **subscriber_options(settings.kafka, NOTIFIER_GROUP,
                                                         AckPolicy.NACK_ON_ERROR))
    async def on_event(body: bytes, message: KafkaMessage) -> None:
        await handle_or_dead_letter(broker, message.raw_message, lambda: events.append(parse(JobEvent, body)))

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

    async def relay(websocket: WebSocket, key: str, after: int, ended) -> None:
        """Send the events logged under ``key`` from ``after`` + 1 on, then live ones, until ``ended``."""
        try:
            while True:
                batch = await events.read(key, after, int(settings.heartbeat_s * 1000))
                if not batch:
                    await websocket.send_json({"type": "heartbeat", "job_id": key})
                for after, event in batch:
                    message = render(after, event, store)
                    await websocket.send_json(message)
                    if ended(message):
                        return await websocket.close(1000)
        except WebSocketDisconnect:
            pass
        except Exception:
            log.exception("event stream of %s failed", key)
            await websocket.close(1011, "internal error; reconnect with after=<last seq>")

    async def authorised(websocket: WebSocket, record, token: str | None) -> bool:
        token = token or websocket.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not token:
            await websocket.close(4401, "missing token")
        elif record is None:
            await websocket.close(4404, "not found")
        elif not record.token_matches(token):
            await websocket.close(4403, "wrong token")
        else:
            return True
        return False

    @app.websocket("/v1/jobs/{job_id}/events")
    async def job_events(websocket: WebSocket, job_id: str, token: str | None = Query(None),
                         after: int = Query(0, ge=0)) -> None:
        await websocket.accept()
        if await authorised(websocket, await jobs.get(job_id), token):
            await relay(websocket, job_id, after, lambda message: message["type"] in TERMINAL_TYPES)

    @app.websocket("/v1/batches/{batch_id}/events")
    async def batch_events(websocket: WebSocket, batch_id: str, token: str | None = Query(None),
                           after: int = Query(0, ge=0)) -> None:
        await websocket.accept()
        if await authorised(websocket, await batches.get(batch_id), token):
            await relay(websocket, batch_id, after,
                        lambda message: message.get("done", 0) + message.get("failed", 0) == message.get("total"))

    return app
