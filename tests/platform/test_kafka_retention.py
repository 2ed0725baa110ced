"""Kafka keeps nothing of a job past its lifetime, shown live on the local broker: a fresh set of topics made
by the platform's own spec builders and bootstrap code, with the lifetime shortened to a minute (and the
deleted files' delay and the consumers' minimum with it); a job's messages written to them (a JobSubmitted
with a prompt, a partner's request with its photo, its events, a dead letter). Polling, not sleeping: each
message stays readable for its topic's retention.ms, then is gone from what any consumer can read within the
lifetime, and its bytes are gone from the broker's disk within the lifetime too."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from photocraft_common.bootstrap import ensure_topics, retention_check_interval_ms
from photocraft_common.contracts import JobEvent, JobSubmitted, PartnerRequest, Progress, Queued, now
from photocraft_common.kafka import connection_kwargs
from photocraft_common.topics import (
    DEAD_LETTERS,
    JOB_EVENTS,
    JOBS_SUBMITTED,
    PARTNER_EVENTS,
    PARTNER_REQUESTS,
    partner_topics,
    platform_topics,
)

LIFETIME_S = 60  # the test's lifetime of a job (the platform's: 24 h)
FILE_DELETE_DELAY_MS = 5_000  # shortened with it (production: 60 s)
MIN_RETENTION_MS = 20_000  # idem (production: 60 s)
POLL_S = 0.5
LATE_S = 15  # how long past a bound the test keeps polling, so that a failure says by how much


@pytest.fixture
async def specs(settings, admin):
    """The platform's topics and a partner's, as the bootstrap makes them for the broker's retention check
    but with the test's lifetime, named under a prefix of their own (no service reads them); deleted after."""
    interval_ms = await retention_check_interval_ms(settings.kafka)
    delays = {"file_delete_delay_ms": FILE_DELETE_DELAY_MS, "min_retention_ms": MIN_RETENTION_MS}
    made = [*platform_topics(["u2netp"], LIFETIME_S, check_interval_ms=interval_ms, **delays),
            *partner_topics("acme", lifetime_s=LIFETIME_S, check_interval_ms=interval_ms, **delays)]
    prefix = f"tests.kafka-retention-{uuid.uuid4().hex[:8]}."
    ours = {spec.name: dataclasses.replace(spec, name=prefix + spec.name) for spec in made}
    created = await ensure_topics(settings.kafka, list(ours.values()))
    try:
        assert sorted(created) == sorted(s.name for s in ours.values())
        yield ours
    finally:
        await admin.delete_topics(created)


async def log_dir(admin) -> Path:
    """The local broker's data folder (its log.dirs), read from the broker."""
    [broker] = (await admin.describe_cluster())["brokers"]
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(broker["node_id"]),
                                                              {"log.dirs": None})])
    [(code, _, _, _, [entry])] = response.resources
    assert code == 0 and "," not in entry[1], entry
    return Path(entry[1])


def on_disk(folder: Path, topics: list[str], markers: list[bytes]) -> set[str]:
    """The segment files (live or deleted, not yet removed) of ``topics`` in the broker's data ``folder``
    that hold any of ``markers``."""
    found = set()
    for topic in topics:
        for path in folder.glob(f"{topic}-*/*.log*"):
            try:
                data = path.read_bytes()
            except FileNotFoundError:  # removed meanwhile
                continue
            if any(marker in data for marker in markers):
                found.add(str(path.relative_to(folder)))
    return found


def holds(record, markers: list[bytes]) -> bool:
    data = b"".join([record.key or b"", record.value or b"", *(value for _, value in record.headers)])
    return any(marker in data for marker in markers)


async def readable(consumer: AIOKafkaConsumer, tps: list[TopicPartition], markers: list[bytes]) -> set[str]:
    """The records (``topic[partition]@offset``) holding any of ``markers`` in a key, value or header that a
    consumer reads from the beginning of ``tps``."""
    ends = await consumer.end_offsets(tps)
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    found = set()
    async with asyncio.timeout(30):
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found |= {f"{r.topic}[{r.partition}]@{r.offset}" for r in records if holds(r, markers)}
    return found


def dead_letter_headers(source, value_bytes: int) -> list[tuple[str, bytes]]:
    """What photocraft_common.kafka.dead_letter writes for a JobSubmitted that did not decode (its topic is
    fixed, so the test writes the same to its own dead-letter topic)."""
    return [(name, value.encode()) for name, value in (
        ("error", "DecodeError('Error parsing message')"), ("error-type", "DecodeError"),
        ("source-topic", source.topic), ("source-partition", str(source.partition)),
        ("source-offset", str(source.offset)), ("source-timestamp", str(source.timestamp)),
        ("source-value-bytes", str(value_bytes)), ("message-type", "photocraft.v1.JobSubmitted"))]


async def test_nothing_of_a_job_is_left_in_kafka_after_its_lifetime(settings, admin, specs):
    tenant, request_id = "acme", uuid.uuid4()
    job_id = request_id.hex  # a partner request's job id
    prompt = f"my neighbour at the beach, {uuid.uuid4().hex}"
    photo = b"\x89PNG\r\n\x1a\n" + os.urandom(64 * 1024)
    params = json.dumps({"prompt": prompt})
    messages = {  # the platform's topic -> key, message
        JOBS_SUBMITTED: (job_id, JobSubmitted(job_id=job_id, tenant_id=tenant, operation="generate",
                                              params_json=params, submitted_at=now(), tier="pro")),
        PARTNER_REQUESTS.format(tenant=tenant): (str(request_id), PartnerRequest(
            request_id=str(request_id), tenant_id=tenant, operation="remove-background", params_json=params,
            image=photo)),
        JOB_EVENTS: (job_id, JobEvent(event_id=uuid.uuid4().hex, job_id=job_id, tenant_id=tenant, time=now(),
                                      queued=Queued())),
        PARTNER_EVENTS.format(tenant=tenant): (job_id, JobEvent(event_id=uuid.uuid4().hex, job_id=job_id,
                                                                tenant_id=tenant, time=now(), progress=Progress())),
    }
    markers = [job_id.encode(), str(request_id).encode(), prompt.encode(), photo[-256:]]
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs.values()])
    found = {r[3]: {e[0]: e[1] for e in r[4]} for response in described for r in response.resources}
    for spec in specs.values():  # made as the platform makes its topics
        assert {k: found[spec.name][k] for k in spec.configs()} == spec.configs(), spec.name
    folder = await log_dir(admin)

    producer = AIOKafkaProducer(**connection_kwargs(settings.kafka), acks="all")
    await producer.start()
    try:
        written = {}  # test topic -> RecordMetadata (partition, offset, the broker's append time in ms)
        for topic, (key, message) in messages.items():
            written[specs[topic].name] = await producer.send_and_wait(
                specs[topic].name, message.SerializeToString(), key=key.encode(),
                headers=[("message-type", message.DESCRIPTOR.full_name.encode())])
        written[specs[DEAD_LETTERS].name] = await producer.send_and_wait(
            specs[DEAD_LETTERS].name, b"", key=job_id.encode(),
            headers=dead_letter_headers(written[specs[JOBS_SUBMITTED].name], messages[JOBS_SUBMITTED][1].ByteSize()))
    finally:
        await producer.stop()
    by_name = {s.name: s for s in specs.values()}
    for name, sent in written.items():
        assert sent.timestamp_type == 1, name  # LogAppendTime: the broker's clock
        assert abs(sent.timestamp - time.time() * 1000) < 30_000, name

    consumer = AIOKafkaConsumer(**connection_kwargs(settings.kafka), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {name: TopicPartition(name, sent.partition) for name, sent in written.items()}
        every_tp = [TopicPartition(s.name, p) for s in specs.values() for p in range(s.partitions)]
        assert await readable(consumer, every_tp, markers) == {  # the probes see the job while it is there
            f"{name}[{sent.partition}]@{sent.offset}" for name, sent in written.items()}
        assert on_disk(folder, list(by_name), markers), f"no segment in {folder} holds the job"

        gone, off_disk = {}, None  # when each message was first seen unreadable; when no file held any
        last_ms = max(s.timestamp + by_name[name].max_age_ms for name, s in written.items())
        while (len(gone) < len(written) or off_disk is None) and time.time() * 1000 < last_ms + LATE_S * 1000:
            starts = await consumer.beginning_offsets(list(tps.values()))
            seen_ms = time.time() * 1000
            gone |= {name: seen_ms for name, sent in written.items()
                     if name not in gone and starts[tps[name]] > sent.offset}
            if off_disk is None and not on_disk(folder, list(by_name), markers):
                off_disk = time.time() * 1000
            await asyncio.sleep(POLL_S)
        assert set(gone) == set(written), f"still readable: {set(written) - set(gone)}"
        for name, sent in written.items():
            spec = by_name[name]
            readable_s, bound_s = (gone[name] - sent.timestamp) / 1000, spec.max_age_ms / 1000
            assert readable_s > spec.retention_ms / 1000, f"{name}: gone after {readable_s:.1f} s, before retention"
            assert readable_s <= bound_s - spec.file_delete_delay_ms / 1000, f"{name}: {readable_s:.1f} s"
        assert off_disk is not None, f"still on disk: {on_disk(folder, list(by_name), markers)}"
        assert off_disk <= last_ms, f"on disk {(off_disk - last_ms) / 1000:.1f} s past the lifetime"
        assert await readable(consumer, every_tp, markers) == set()
    finally:
        await consumer.stop()
