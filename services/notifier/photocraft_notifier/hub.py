"""Fan-out inside one notifier process.

One Redis pub/sub connection per process reads the live feed of every event
(eventlog.CHANNEL) and offers each to the subscriptions of its job and of its
tenant, each a bounded queue owned by one WebSocket. Offering never waits: a
subscription whose queue is full is marked ``overflowed`` and gets nothing
more, so a slow client costs the others nothing; its connection tells it to
resync from the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import NoReturn

from redis.asyncio import Redis

from photocraft_common.background import every

from .eventlog import CHANNEL, Logged
from .metrics import SEND_QUEUE

log = logging.getLogger("photocraft.notifier.hub")


class Subscription:
    """Live events for one WebSocket: a queue of at most ``size`` events."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Logged | None] = asyncio.Queue(size)
        self.overflowed = False

    def offer(self, item: Logged | None) -> bool:
        """Queue ``item`` (None: the feed had a gap; re-read the log), or mark the subscription overflowed."""
        if self.overflowed:
            return False
        try:
            self.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            self.overflowed = True
            return False


class Hub:
    def __init__(self, redis: Redis, queue_size: int) -> None:
        self._redis = redis
        self._queue_size = queue_size
        self._by_key: dict[str, set[Subscription]] = defaultdict(set)
        SEND_QUEUE.labels("all").set_function(lambda: sum(s.queue.qsize() for s in self._subscriptions()))
        SEND_QUEUE.labels("longest").set_function(lambda: max((s.queue.qsize() for s in self._subscriptions()),
                                                              default=0))

    @contextmanager
    def subscribe(self, key: str) -> Iterator[Subscription]:
        """A subscription to ``job:<id>`` or ``tenant:<id>`` while the block runs."""
        subscription = Subscription(self._queue_size)
        self._by_key[key].add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._by_key[key]
            subscribers.discard(subscription)
            if not subscribers:
                del self._by_key[key]

    def connections(self) -> int:
        return sum(map(len, self._by_key.values()))

    def _subscriptions(self) -> list[Subscription]:
        return [subscription for subscribers in list(self._by_key.values()) for subscription in subscribers]

    def _dispatch(self, item: Logged) -> None:
        for key in (f"job:{item.event.job_id}", f"tenant:{item.event.tenant_id}"):
            for subscription in self._by_key.get(key, ()):
                subscription.offer(item)

    def _gap(self) -> None:
        for subscribers in self._by_key.values():
            for subscription in subscribers:
                subscription.offer(None)

    async def run(self, ready: asyncio.Event) -> NoReturn:
        """Read the feed until cancelled, setting ``ready`` once subscribed; a second after a lost Redis
        connection, subscribe again and tell everyone to re-read the log."""
        await every(1, partial(self._listen, ready), "live event feed", first_wait=False, logger=log)

    async def _listen(self, ready: asyncio.Event) -> None:
        async with self._redis.pubsub() as pubsub:
            await pubsub.subscribe(CHANNEL)
            ready.set()
            self._gap()  # events published while not subscribed are only in the log
            async for message in pubsub.listen():
                if message["type"] == "message":
                    self._dispatch(Logged.from_feed(message["data"]))
