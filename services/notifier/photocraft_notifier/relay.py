"""One feed relayed to one WebSocket: the logged events after ``after``, then live ones.

A connection subscribes to the hub first, then replays the log, so no event falls between the two.
A gap in the live feed (the hub lost Redis, or a live event is ahead of the last one sent) is filled
from the log.
A heartbeat goes out after ``heartbeat_s`` without events; a client the hub gave up on
(``Subscription.overflowed``) gets a ``resync`` message and the close code 4008. Close codes: 1000
the feed ended, 1011 server error. Messages are rendered once per process, whoever receives them, their
presigned URLs bounded by the job's deadline that came with the event (Logged.expires).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache, partial

from fastapi import WebSocket, WebSocketDisconnect

from photocraft_common import logs, telemetry
from photocraft_common.contracts import now, to_datetime
from photocraft_common.storage import ObjectStore

from .eventlog import EventLog, Logged
from .hub import Hub, Subscription
from .metrics import CONNECTIONS, EVENTS_SENT, RESYNCS
from .render import TERMINAL_TYPES, render
from .settings import NotifierSettings

log = logging.getLogger("photocraft.notifier")

PAGE = 100  # events EventLog returns at most per read


@dataclass(frozen=True)
class Feed:
    """What one WebSocket follows: its hub key, how to read its log, where an event sits in it."""

    key: str
    read: Callable[[int], Awaitable[list[Logged]]]
    tenant_wide: bool  # positioned by the tenant's cursor, not the job's seq
    ended: Callable[[dict], bool]
    kind: str  # job, batch or tenant (metrics' label)

    def position(self, item: Logged) -> int:
        return item.cursor if self.tenant_wide else item.seq


def batch_ended(message: dict) -> bool:
    return message.get("done", 0) + message.get("failed", 0) == message.get("total")


def job_feed(events: EventLog, job_id: str) -> Feed:
    """A job's events; ends after its terminal one."""
    return Feed(f"job:{job_id}", partial(events.job_events, job_id), False,
                lambda message: message["type"] in TERMINAL_TYPES, "job")


def batch_feed(events: EventLog, batch_id: str) -> Feed:
    """A batch's progress (logged under the batch id); ends once every job of the batch ended."""
    return Feed(f"job:{batch_id}", partial(events.job_events, batch_id), False, batch_ended, "batch")


def tenant_feed(events: EventLog, tenant_id: str) -> Feed:
    """Every event of a tenant, by cursor; never ends."""
    return Feed(f"tenant:{tenant_id}", partial(events.tenant_events, tenant_id), True, lambda _: False, "tenant")


class Relay:
    def __init__(self, hub: Hub, store: ObjectStore, settings: NotifierSettings) -> None:
        self._hub = hub
        self._store = store
        self.heartbeat_s = settings.heartbeat_s
        self.send_timeout_s = settings.send_timeout_s
        self.rendered = lru_cache(maxsize=4096)(self._render)

    def _render(self, item: Logged, tenant_wide: bool) -> tuple[dict, str]:
        """The message for ``item`` and its JSON text, made once for every subscriber of this process."""
        message = render(item.seq, item.event, self._store, item.expires)
        if tenant_wide:
            message["cursor"] = item.cursor
        return message, json.dumps(message)

    async def __call__(self, websocket: WebSocket, feed: Feed, after: int) -> None:
        """Send ``feed``'s logged events after ``after``, then live ones, until it ends or the client leaves."""
        stream = _Stream(self, websocket, feed, after)
        owner = feed.key.split(":", 1)[1]  # its lines name the job (batch) or tenant it follows
        logs.mark(job_id="" if feed.tenant_wide else owner, tenant=owner if feed.tenant_wide else "")
        with self._hub.subscribe(feed.key) as live, CONNECTIONS.labels(feed.kind).track_inprogress():
            try:
                if await stream.catch_up() or await stream.follow(live):
                    await websocket.close(1000)
            except (WebSocketDisconnect, TimeoutError):
                pass
            except Exception:
                log.exception("event stream %s failed", feed.key)
                await websocket.close(1011, "internal error; reconnect with after")


@dataclass
class _Stream:
    """One connection's place in its feed: ``last`` is the position of the last event sent."""

    relay: Relay
    websocket: WebSocket
    feed: Feed
    last: int

    async def send(self, item: Logged) -> bool:
        """Send ``item``; True if it ends the feed. Raises TimeoutError when the client takes too long."""
        message, text = self.relay.rendered(item, self.feed.tenant_wide)
        with telemetry.continued(item.traceparent, f"send {message['type']}", kind=telemetry.SpanKind.PRODUCER,
                                 attributes={"photocraft.job_id": item.event.job_id, "photocraft.feed": self.feed.kind},
                                 orphan=False):  # in the trace of the event's job, if it has one
            async with asyncio.timeout(self.relay.send_timeout_s):  # (wait_for would start a task per message)
                await self.websocket.send_text(text)
        EVENTS_SENT.labels(self.feed.kind).inc()
        self.last = self.feed.position(item)
        return self.feed.ended(message)

    async def catch_up(self) -> bool:
        """Send the logged events after ``last``; True if one ended the feed."""
        while True:
            logged = await self.feed.read(self.last)
            for item in logged:
                if await self.send(item):
                    return True
            if len(logged) < PAGE:
                return False

    async def follow(self, live: Subscription) -> bool:
        """Send live events until one ends the feed (True) or the client fell behind (False, closed 4008)."""
        while True:
            try:
                async with asyncio.timeout(self.relay.heartbeat_s):
                    item = await live.queue.get()
            except TimeoutError:
                heartbeat = {"type": "heartbeat", "time": to_datetime(now()).isoformat()}
                await self.websocket.send_text(json.dumps(heartbeat))
                continue
            if live.overflowed:
                await self.resync()
                return False
            if item is None or self.feed.position(item) > self.last + 1:  # the live feed skipped something
                if await self.catch_up():
                    return True
            elif self.feed.position(item) > self.last and await self.send(item):
                return True

    async def resync(self) -> None:
        RESYNCS.labels(self.feed.kind).inc()
        async with asyncio.timeout(self.relay.send_timeout_s):
            await self.websocket.send_text(json.dumps(
                {"type": "resync", "after": self.last,
                 "reason": "the client fell behind; reconnect with after=<last seq or cursor seen>"}))
        await self.websocket.close(4008, "too slow; reconnect with after")
