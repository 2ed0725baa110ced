"""Kafka keeps nothing of a job past its lifetime, and photos from partners for at most an hour: the topics'
configs read back from the real broker after the real tools made or fixed them, and a real dead letter."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from google.protobuf.message import DecodeError

from photocraft_common.bootstrap import retention_check_interval_ms
from photocraft_common.kafka import connection_kwargs, handle_or_dead_letter, make_broker
from photocraft_common.topics import DEAD_LETTERS, JOBS_CANCELLED, PARTNER_EVENTS, PARTNER_REQUESTS, partner_tenant

from .helpers import partitions

BIN = Path(sys.executable).parent
HOUR_MS, DAY_S = 3600 * 1000, 24 * 3600
WEEK_MS = 7 * 24 * HOUR_MS


def run(*command: str) -> str:
    result = subprocess.run([BIN / command[0], *command[1:]], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
async def check_interval_ms(settings) -> int:
    """The broker's log.retention.check.interval.ms, as the bootstrap reads it."""
    return await retention_check_interval_ms(settings.kafka)


async def configs(admin, names: list[str]) -> dict[str, dict[str, tuple[str, int]]]:
    """Each topic's effective configs as the broker describes them: name -> (value, config source)."""
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
    found = {r[3]: {e[0]: (e[1], e[3]) for e in r[4]} for response in described for r in response.resources}
    assert set(found) == set(names)
    return found


def longest_stay_ms(config: dict[str, tuple[str, int]], check_interval_ms: int) -> int:
    """How long the broker may keep a message: its segment rolls, then the segment's newest message passes
    retention, then the broker's next retention check (``check_interval_ms``), then the files' deletion delay."""
    return sum(int(config[name][0]) for name in ("segment.ms", "retention.ms", "file.delete.delay.ms")) \
        + check_interval_ms


def assert_bounded(name: str, config: dict[str, tuple[str, int]], lifetime_s: int, check_interval_ms: int) -> None:
    bound_ms = min(HOUR_MS, lifetime_s * 1000) if name.endswith(".requests") else lifetime_s * 1000
    assert longest_stay_ms(config, check_interval_ms) <= bound_ms, (
        name, {k: config[k] for k in ("segment.ms", "retention.ms")})
    assert int(config["retention.ms"][0]) >= bound_ms // 2, f"{name}: consumers still need time to read"
    assert config["message.timestamp.type"][0] == "LogAppendTime", name  # no producer's clock stretches it
    assert config["cleanup.policy"][0] == "delete", name


async def test_after_bootstrap_every_topic_keeps_messages_within_the_lifetime(admin, settings, check_interval_ms):
    assert settings.job_ttl_s <= DAY_S  # the product's promise
    run("photocraft-bootstrap")
    tenant = f"retention-{uuid.uuid4().hex[:8]}"
    run("photocraft-tenants", "partner", tenant, "--tier", "pro")  # made after the bootstrap, by the real tool
    names = [t for t in await admin.list_topics() if t.startswith("photocraft.")]
    assert {PARTNER_REQUESTS.format(tenant=tenant), PARTNER_EVENTS.format(tenant=tenant), DEAD_LETTERS,
            JOBS_CANCELLED} <= set(names)
    found = await configs(admin, names)
    for name in names:
        assert_bounded(name, found[name], settings.job_ttl_s, check_interval_ms)
    for name in (PARTNER_REQUESTS.format(tenant=tenant), PARTNER_EVENTS.format(tenant=tenant), DEAD_LETTERS):
        bound_s = min(3600, settings.job_ttl_s) if name.endswith(".requests") else settings.job_ttl_s
        assert longest_stay_ms(found[name], check_interval_ms) == bound_s * 1000, name  # the broker's own check
    assert found[PARTNER_REQUESTS.format(tenant=tenant)]["max.message.bytes"][0] == str(16 * 1024 * 1024)


async def test_bootstrap_brings_topics_made_with_seven_days_to_spec(admin, settings, check_interval_ms):
    """An installation from before: a partner's requests topic made with 7 days (and an override of the
    operator's), and a platform topic with the old configs. The bootstrap fixes both and keeps the override."""
    tenant = f"retention-{uuid.uuid4().hex[:8]}"
    old = PARTNER_REQUESTS.format(tenant=tenant)
    await admin.create_topics([NewTopic(old, 1, 1, topic_configs={
        "retention.ms": str(WEEK_MS), "max.message.bytes": str(1024 * 1024), "min.insync.replicas": "1"})])
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, JOBS_CANCELLED, {
            "retention.ms": str(WEEK_MS), "max.message.bytes": str(1024 * 1024)})])
        before = await configs(admin, [old, JOBS_CANCELLED])
        assert [before[n]["retention.ms"][0] for n in (old, JOBS_CANCELLED)] == [str(WEEK_MS)] * 2

        output = run("photocraft-bootstrap")
        assert f"{old}: " in output and "retention.ms 604800000 -> " in output

        after = await configs(admin, [old, JOBS_CANCELLED])
        for name in (old, JOBS_CANCELLED):
            assert_bounded(name, after[name], settings.job_ttl_s, check_interval_ms)
        assert after[old]["max.message.bytes"][0] == str(16 * 1024 * 1024)
        assert after[old]["min.insync.replicas"] == ("1", 1)  # still the topic's own override (source 1)
        assert PARTNER_EVENTS.format(tenant=tenant) not in await admin.list_topics()  # fixed, not made
        assert partner_tenant(old) == tenant
        assert "retention.ms" not in run("photocraft-bootstrap")  # once to spec, nothing changes
    finally:
        await admin.delete_topics([old])


async def test_a_dead_letter_carries_a_reference_and_the_error_but_no_value(admin, settings):
    """A message that cannot be handled, through the real dead-letter path to the real topic."""
    source = f"tests.retention-{uuid.uuid4().hex[:8]}"  # outside photocraft.*: no service reads it
    await admin.create_topics([NewTopic(source, 1, 1)])
    dead = await partitions(settings, [DEAD_LETTERS])
    reader = AIOKafkaConsumer(**connection_kwargs(settings.kafka), enable_auto_commit=False)
    broker = make_broker(settings.kafka, "tests-retention")
    await reader.start()
    try:
        reader.assign(dead)
        for tp, offset in (await reader.end_offsets(dead)).items():
            reader.seek(tp, offset)
        producer = AIOKafkaProducer(**connection_kwargs(settings.kafka))
        await producer.start()
        secret = b"\x89PNG photo bytes and a prompt: my neighbour at the beach"
        key = uuid.uuid4().hex.encode()
        try:
            sent = await producer.send_and_wait(source, secret, key=key,
                                                headers=[("message-type", b"photocraft.v1.JobSubmitted")])
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(**connection_kwargs(settings.kafka), enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([TopicPartition(source, 0)])
            consumer.seek(TopicPartition(source, 0), sent.offset)
            record = await asyncio.wait_for(consumer.getone(), 30)
        finally:
            await consumer.stop()

        async def poison() -> None:
            raise DecodeError("Error parsing message")

        await broker.start()
        await handle_or_dead_letter(broker, record, poison)
        found = None
        async with asyncio.timeout(30):
            while found is None:
                for records in (await reader.getmany(timeout_ms=1000)).values():
                    found = next((r for r in records if r.key == key), found)
        assert found.value == b"" and secret not in b"".join(value for _, value in found.headers)
        headers = {name: value.decode() for name, value in found.headers}
        assert (headers["source-topic"], headers["source-partition"], headers["source-offset"]) == (
            source, "0", str(sent.offset))
        assert headers["source-timestamp"] == str(record.timestamp) and headers["source-value-bytes"] == str(
            len(secret))
        assert headers["message-type"] == "photocraft.v1.JobSubmitted" and headers["error-type"] == "DecodeError"
        assert "Error parsing message" in headers["error"]
        assert found.timestamp_type == 1  # LogAppendTime: the broker's clock decides when it goes
    finally:
        await broker.stop()
        await reader.stop()
        await admin.delete_topics([source])
