"""The notifier's WebSocket endpoints and its Kafka consumer.

Three feeds, each sending the logged events after ``after`` (all of them by
default), then live ones (protocol: docs/events.md):

- ``/v1/jobs/{job_id}/events?token=<job token>&after=<seq>``: one job; closes
  after its terminal event (completed, failed, cancelled);
- ``/v1/batches/{batch_id}/events?token=<batch token>&after=<seq>``: a batch's
  progress; closes once every job of the batch ended;
- ``/v1/events?api_key=<key>|device_token=<token>&after=<cursor>``: every event
  of the caller's tenant, positioned by ``cursor``; stays open.

Credentials may also come as ``Authorization: Bearer`` (job or batch token, API
key) or ``X-Device-Token`` headers. A heartbeat goes out when nothing happened
for ``heartbeat_s``. Close codes: 1000 the job (batch) ended, 1011 server error,
4008 the client fell behind (after a ``resync`` message), 4401 missing
credentials, 4403 wrong ones, 4404 unknown job (batch). After any close but
1000 and 44xx, reconnect with ``after`` = the last ``seq`` (``cursor``) seen.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from faststream.kafka.annotations import KafkaMessage

from photocraft_common.accounts import Accounts
from photocraft_common.batches import BatchStore
from photocraft_common.contracts import JobEvent, now, parse, to_datetime
from photocraft_common.health import checks, probe
from photocraft_common.jobs import JobStore
from photocraft_common.kafka import AckPolicy, handle_or_dead_letter, make_broker, subscriber_options
from photocraft_common.redis_client import make_redis
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import JOB_EVENTS, NOTIFIER_GROUP

from .eventlog import EventLog, Logged
from .hub import Hub
from .partners import PartnerRelay
from .render import TERMINAL_TYPES, render
from .settings import NotifierSettings

log = logging.getLogger("photocraft.notifier")


@dataclass(frozen=True)
class Feed:
    """What one WebSocket follows: its hub key, how to read its log, where an event sits in it."""

    key: str
    read: Callable[[int], Awaitable[list[Logged]]]
    tenant_wide: bool  # positioned by the tenant's cursor, not the job's seq
    ended: Callable[[dict], bool]

    def position(self, item: Logged) -> int:
        return item.cursor if self.tenant_wide else item.seq


def batch_ended(message: dict) -> bool:
    return message.get("done", 0) + message.get("failed", 0) == message.get("total")


def create_app(settings: NotifierSettings | None = None) -> FastAPI:
    settings = settings or NotifierSettings()
    # Bounded: thousands of clients connecting at once wait for a connection rather than open one each.
    redis = make_redis(settings.redis, max_connections=settings.redis_connections, blocking=True)
    events = EventLog(redis, settings.job_ttl_s)
    hub = Hub(redis, settings.send_queue)
    jobs = JobStore(redis, settings.job_ttl_s)
    batches = BatchStore(redis, settings.job_ttl_s)
    accounts = Accounts(redis, settings.device_token_secret.get_secret_value())
    store = ObjectStore(settings.s3)
    broker = make_broker(settings.kafka, "photocraft-notifier")
    partners = PartnerRelay(broker, redis, store)

    async def on_event_logged(event: JobEvent) -> None:
        await partners.relay(event)  # first: a crash before logging redelivers it (partners dedupe by event_id)
        await events.append(event)

    @broker.subscriber(JOB_EVENTS, **subscriber_options(settings.kafka, NOTIFIER_GROUP,
                                                         AckPolicy.NACK_ON_ERROR))
    async def on_event(body: bytes, message: KafkaMessage) -> None:
        await handle_or_dead_letter(broker, message.raw_message, lambda: on_event_logged(parse(JobEvent, body)))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        feed_ready = asyncio.Event()
        feed = asyncio.create_task(hub.run(feed_ready))
        await asyncio.wait_for(feed_ready.wait(), 30)
        await broker.start()
        try:
            yield
        finally:
            await broker.stop()
            feed.cancel()
            await redis.aclose()

    app = FastAPI(title="Photocraft notifier", version="0.1.0", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    readiness = checks(kafka=broker, redis=redis, s3=store.client, bucket=settings.s3.bucket)

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """200 while Kafka, Redis and S3 answer, else 503 naming the failing ones (photocraft_common.health)."""
        status, body = await probe(readiness)
        return JSONResponse(body, status)

    @app.get("/metrics")
    async def metrics() -> dict[str, int]:
        return {"connections": hub.connections(), "events_queued": hub.queued}

    @lru_cache(maxsize=4096)
    def rendered(item: Logged, tenant_wide: bool) -> tuple[dict, str]:
        """The message for ``item``, rendered and serialised once for every subscriber of this process."""
        message = render(item.seq, item.event, store)
        if tenant_wide:
            message["cursor"] = item.cursor
        return message, json.dumps(message)

    async def relay(websocket: WebSocket, feed: Feed, after: int) -> None:
        """Send ``feed``'s logged events after ``after``, then live ones, until it ends or the client leaves."""
        last = after

        async def send(item: Logged) -> bool:
            nonlocal last
            message, text = rendered(item, feed.tenant_wide)
            async with asyncio.timeout(settings.send_timeout_s):  # (wait_for would start a task per message)
                await websocket.send_text(text)
            last = feed.position(item)
            return feed.ended(message)

        async def catch_up() -> bool:
            while True:
                logged = await feed.read(last)
                for item in logged:
                    if await send(item):
                        return True
                if len(logged) < 100:
                    return False

        with hub.subscribe(feed.key) as live:
            try:
                if await catch_up():
                    return await websocket.close(1000)
                while True:
                    try:
                        async with asyncio.timeout(settings.heartbeat_s):
                            item = await live.queue.get()
                    except TimeoutError:
                        await websocket.send_text(json.dumps({"type": "heartbeat",
                                                              "time": to_datetime(now()).isoformat()}))
                        continue
                    if live.overflowed:
                        async with asyncio.timeout(settings.send_timeout_s):
                            await websocket.send_text(json.dumps(
                                {"type": "resync", "after": last, "reason": "the client fell behind; "
                                 "reconnect with after=<last seq or cursor seen>"}))
                        return await websocket.close(4008, "too slow; reconnect with after")
                    if item is None or feed.position(item) > last + 1:  # the live feed skipped something
                        if await catch_up():
                            return await websocket.close(1000)
                    elif feed.position(item) > last and await send(item):
                        return await websocket.close(1000)
            except (WebSocketDisconnect, TimeoutError):
                pass
            except Exception:
                log.exception("event stream %s failed", feed.key)
                await websocket.close(1011, "internal error; reconnect with after")

    def credential(websocket: WebSocket, given: str | None, header: str = "authorization") -> str:
        return given or websocket.headers.get(header, "").removeprefix("Bearer ").strip()

    async def authorised(websocket: WebSocket, record, token: str | None) -> bool:
        token = credential(websocket, token)
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
            feed = Feed(f"job:{job_id}", lambda last: events.job_events(job_id, last), False,
                        lambda message: message["type"] in TERMINAL_TYPES)
            await relay(websocket, feed, after)

    @app.websocket("/v1/batches/{batch_id}/events")
    async def batch_events(websocket: WebSocket, batch_id: str, token: str | None = Query(None),
                           after: int = Query(0, ge=0)) -> None:
        await websocket.accept()
        if await authorised(websocket, await batches.get(batch_id), token):
            feed = Feed(f"job:{batch_id}", lambda last: events.job_events(batch_id, last), False, batch_ended)
            await relay(websocket, feed, after)

    @app.websocket("/v1/events")
    async def tenant_events(websocket: WebSocket, api_key: str | None = Query(None),
                            device_token: str | None = Query(None), after: int = Query(0, ge=0)) -> None:
        await websocket.accept()
        key, device = credential(websocket, api_key), credential(websocket, device_token, "x-device-token")
        if not key and not device:
            return await websocket.close(4401, "send an API key or a device token")
        caller = await accounts.by_key(key) if key else accounts.by_device_token(device)
        if caller is None:
            return await websocket.close(4403, "unknown API key or device token")
        tenant = caller.tenant_id
        feed = Feed(f"tenant:{tenant}", lambda last: events.tenant_events(tenant, last), True, lambda _: False)
        await relay(websocket, feed, after)

    return app
