"""OrderedEvents (photocraft_common.events): a task's events go out in order, beside the task, all before flush."""

import asyncio

import pytest

from photocraft_common.events import OrderedEvents


class SlowPublisher:
    """An EventPublisher stand-in: each publish takes a while (the first the longest), one may fail."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.published: list[str] = []
        self.fail_on = fail_on

    async def emit(self, job_id: str, tenant_id: str, **kind) -> None:
        name = kind["name"]
        await asyncio.sleep(0.02 if not self.published else 0)
        if name == self.fail_on:
            raise ConnectionError(f"{name} not taken")
        self.published.append(name)


def test_events_keep_their_order_and_do_not_hold_the_caller_up():
    async def scenario():
        publisher = SlowPublisher()
        events = OrderedEvents(publisher)
        for name in ("started", "progress 10", "progress 70"):
            events.emit("job", "tenant", name=name)
        assert publisher.published == []  # emit returned before anything was published
        await events.flush()
        return publisher.published
    assert asyncio.run(scenario()) == ["started", "progress 10", "progress 70"]


def test_flush_raises_a_failed_publish_and_nothing_after_it_goes_out():
    async def scenario():
        publisher = SlowPublisher(fail_on="progress 10")
        events = OrderedEvents(publisher)
        for name in ("started", "progress 10", "progress 70"):
            events.emit("job", "tenant", name=name)
        with pytest.raises(ConnectionError, match="progress 10"):
            await events.flush()
        return publisher.published
    assert asyncio.run(scenario()) == ["started"]


def test_flush_without_events_returns():
    asyncio.run(OrderedEvents(SlowPublisher()).flush())
