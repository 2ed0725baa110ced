"""The topics' specs (retention derived from the lifetime of a job) and what a dead letter holds.
Nothing needs to run: the dead letter goes through FastStream's in-memory Kafka broker."""

from __future__ import annotations

import asyncio
import re

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from google.protobuf.message import DecodeError

from photocraft_common.kafka import dead_letter, handle_or_dead_letter
from photocraft_common.settings import PlatformSettings
from photocraft_common.topics import (
    DEAD_LETTERS,
    JOB_EVENTS,
    JOBS_CANCELLED,
    JOBS_SUBMITTED,
    PARTNER_EVENTS,
    PARTNER_MESSAGE_BYTES,
    PARTNER_REQUESTS,
    RETENTION_CHECK_INTERVAL_MS,
    TASK_RESULTS,
    USAGE_REPORTS,
    model_topic,
    partner_tenant,
    partner_topics,
    platform_topics,
)

HOUR_MS = 3600 * 1000
DAY_S = 24 * 3600


def longest_stay_ms(configs: dict[str, str], check_interval_ms: int = RETENTION_CHECK_INTERVAL_MS) -> int:
    """How long Kafka may keep a message under these topic configs: until its segment rolls, then until
    the segment's newest message is past retention and the broker's next check, then the file delay."""
    return (int(configs["segment.ms"]) + int(configs["retention.ms"]) + check_interval_ms
            + int(configs["file.delete.delay.ms"]))


def test_the_lifetime_is_24_hours_and_bounds_every_platform_topic(monkeypatch):
    monkeypatch.delenv("PHOTOCRAFT_JOB_TTL_S", raising=False)
    assert PlatformSettings().job_ttl_s == DAY_S
    specs = {s.name: s for s in platform_topics(["u2netp", "realesrgan"])}
    assert set(specs) == {JOBS_SUBMITTED, JOBS_CANCELLED, TASK_RESULTS, JOB_EVENTS, USAGE_REPORTS, DEAD_LETTERS,
                          model_topic("u2netp"), model_topic("realesrgan")}
    for spec in specs.values():
        configs = spec.configs()
        assert longest_stay_ms(configs) <= DAY_S * 1000, spec.name
        assert int(configs["retention.ms"]) >= 20 * HOUR_MS, "consumers keep most of the day to catch up"
        assert configs["cleanup.policy"] == "delete" and configs["message.timestamp.type"] == "LogAppendTime"
        assert configs["max.message.bytes"] == str(1024 * 1024)


def test_partner_requests_carry_photos_for_at_most_an_hour():
    requests, events = partner_topics("acme")
    assert requests.name == PARTNER_REQUESTS.format(tenant="acme")
    assert events.name == PARTNER_EVENTS.format(tenant="acme")
    assert longest_stay_ms(requests.configs()) <= HOUR_MS
    assert int(requests.configs()["max.message.bytes"]) == PARTNER_MESSAGE_BYTES
    assert HOUR_MS < longest_stay_ms(events.configs()) <= DAY_S * 1000


@pytest.mark.parametrize("lifetime_s", [600, 1800, 2 * 3600, 12 * 3600])
def test_retention_follows_the_lifetime(lifetime_s):
    for spec in [*platform_topics(["u2netp"], lifetime_s), *partner_topics("acme", lifetime_s=lifetime_s)]:
        assert spec.max_age_ms <= lifetime_s * 1000
        assert longest_stay_ms(spec.configs()) == spec.max_age_ms
    requests = partner_topics("acme", lifetime_s=lifetime_s)[0]
    assert requests.max_age_ms == min(lifetime_s, 3600) * 1000


def test_a_slower_retention_check_leaves_less_retention():
    quick, slow = (platform_topics([], check_interval_ms=ms)[0] for ms in (1000, RETENTION_CHECK_INTERVAL_MS))
    assert quick.retention_ms - slow.retention_ms == RETENTION_CHECK_INTERVAL_MS - 1000
    assert longest_stay_ms(quick.configs(), 1000) == longest_stay_ms(slow.configs()) == DAY_S * 1000


def test_a_lifetime_too_short_for_kafka_is_refused_naming_the_shortest():
    with pytest.raises(ValueError, match=r"photocraft\.jobs\.submitted: .* too short .* at least (\d+) s") as info:
        platform_topics([], lifetime_s=300)
    shortest = int(re.search(r"at least (\d+) s", str(info.value)).group(1))
    assert platform_topics([], lifetime_s=shortest)[0].retention_ms >= 60_000
    with pytest.raises(ValueError):
        platform_topics([], lifetime_s=shortest - 1)
    assert partner_topics("acme", lifetime_s=150, check_interval_ms=1000)[0].retention_ms >= 60_000


def test_partner_topics_name_their_tenant():
    assert partner_tenant(PARTNER_REQUESTS.format(tenant="acme")) == "acme"
    assert partner_tenant(PARTNER_EVENTS.format(tenant="partner-1a2b")) == "partner-1a2b"
    for other in (JOBS_SUBMITTED, DEAD_LETTERS, "photocraft.partner..requests", "photocraft.partner.acme.other"):
        assert partner_tenant(other) is None


def record(value: bytes, key: bytes | None = b"job-1") -> ConsumerRecord:
    return ConsumerRecord(topic=JOBS_SUBMITTED, partition=4, offset=1234, timestamp=1_700_000_000_123,
                          timestamp_type=1, key=key, value=value, checksum=None, serialized_key_size=5,
                          serialized_value_size=len(value),
                          headers=((("message-type", b"photocraft.v1.JobSubmitted"),)))


async def dead_letters_of(*records_and_errors) -> list:
    """What ``dead_letter`` publishes for each (record, error), as FastStream's test broker delivers it."""
    broker = KafkaBroker()
    received = []

    @broker.subscriber(DEAD_LETTERS)
    async def collect(message: KafkaMessage) -> None:
        received.append(message.raw_message)

    async with TestKafkaBroker(broker):
        for rec, error in records_and_errors:
            await dead_letter(broker, rec, error)
    return received


async def test_a_dead_letter_holds_a_reference_and_the_error_never_the_value():
    secret = b"\x89PNG a photo, and a prompt: my neighbour's face"
    [letter] = await dead_letters_of((record(secret), DecodeError("Error parsing message")))
    assert letter.value == b"" and secret not in b"".join(v for _, v in letter.headers)
    assert letter.key == b"job-1"
    headers = {name: value.decode() for name, value in letter.headers}
    assert {k: headers[k] for k in ("source-topic", "source-partition", "source-offset", "source-timestamp",
                                   "source-value-bytes", "message-type", "error-type")} == {
        "source-topic": JOBS_SUBMITTED, "source-partition": "4", "source-offset": "1234",
        "source-timestamp": "1700000000123", "source-value-bytes": str(len(secret)),
        "message-type": "photocraft.v1.JobSubmitted", "error-type": "DecodeError"}
    assert "Error parsing message" in headers["error"]


async def test_an_oversized_key_is_left_out_of_the_dead_letter():
    [letter] = await dead_letters_of((record(b"x", key=b"k" * 10_000), ValueError("bad")))
    assert not letter.key and letter.value == b""  # the test broker gives b"" for no key


async def test_a_message_that_cannot_be_handled_is_dead_lettered_without_its_value():
    broker = KafkaBroker()
    received = []

    @broker.subscriber(DEAD_LETTERS)
    async def collect(message: KafkaMessage) -> None:
        received.append(message.raw_message)

    async def poison() -> None:
        raise DecodeError("not a protobuf message")

    async with TestKafkaBroker(broker):
        await asyncio.wait_for(handle_or_dead_letter(broker, record(b"\xff\xfe prompt"), poison), 5)
    assert [(r.value, dict(r.headers)["error-type"]) for r in received] == [(b"", b"DecodeError")]
