"""A batch subscriber polls again at once after an empty poll (kafka.poll_without_pause), where FastStream
would first sleep ``batch_timeout_ms``: a task written during that sleep waited for nothing. Nothing runs:
the consumer is a stand-in with aiokafka's ``getmany`` contract."""

from __future__ import annotations

import time

from faststream.kafka import KafkaBroker

from photocraft_common.kafka import poll_without_pause


class Consumer:
    """``getmany`` as aiokafka's: ``{partition: [records]}``, empty when nothing came within the timeout."""

    def __init__(self, polls: list[dict]) -> None:
        self.polls = polls
        self.calls: list[tuple[int, int | None]] = []

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.calls.append((timeout_ms, max_records))
        return self.polls.pop(0)


def batch_subscriber(broker: KafkaBroker):
    return broker.subscriber("photocraft.tasks.model.u2netp", batch=True, max_records=4, batch_timeout_ms=300,
                             group_id="test")


async def test_faststream_pauses_after_an_empty_poll_and_the_patched_subscriber_does_not():
    broker = KafkaBroker("127.0.0.1:1")
    plain, patched = batch_subscriber(broker), poll_without_pause(batch_subscriber(broker))
    started = time.monotonic()
    assert await plain.get_msg(Consumer([{}])) == ()
    assert time.monotonic() - started >= 0.29  # FastStream's own pause: what this works around
    started = time.monotonic()
    consumer = Consumer([{}])
    assert await patched.get_msg(consumer) == ()
    assert time.monotonic() - started < 0.1
    assert consumer.calls == [(1000, 4)]  # a long poll (it returns once records come), the batch size


async def test_records_of_every_partition_come_back_in_one_batch():
    patched = poll_without_pause(batch_subscriber(KafkaBroker("127.0.0.1:1")))
    assert await patched.get_msg(Consumer([{"p0": ["a", "b"], "p1": ["c"]}])) == ("a", "b", "c")
