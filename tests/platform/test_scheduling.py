"""Quotas, retries, dead letters, cancellation and a scheduler killed mid-load, on the real platform."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord
from skimage import data

from photocraft_common.contracts import TaskDispatched, TaskResult, parse
from photocraft_common.operations import MODELS
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import tenant_prefix
from photocraft_common.topics import DEAD_LETTERS, JOBS_SUBMITTED, SCHEDULER_GROUP, TASK_RESULTS, model_topic

from .helpers import (
    TERMINAL,
    download,
    end_offsets,
    events_until,
    events_while,
    fresh,
    partitions,
    png_bytes,
    submit,
    supervisorctl,
)

SMALL = data.astronaut()[::8, ::8]  # 64 x 64: quick jobs


async def test_the_sixth_anonymous_edit_of_a_day_is_refused(anonymous):
    address = f"10.{os.urandom(1)[0]}.{os.urandom(1)[0]}.{os.urandom(1)[0]}"  # a client of its own
    headers = {"X-Forwarded-For": address}
    first = await anonymous.post("/v1/jobs", files={"file": ("a.png", png_bytes(fresh(SMALL)))},
                                 data={"operation": "remove-background"}, headers=headers)
    assert first.status_code == 202
    headers["X-Device-Token"] = first.headers["X-Device-Token"]  # a device token issued to us
    for _ in range(4):
        response = await anonymous.post("/v1/jobs", files={"file": ("a.png", png_bytes(fresh(SMALL)))},
                                        data={"operation": "remove-background"}, headers=headers)
        assert response.status_code == 202, response.text
    sixth = await anonymous.post("/v1/jobs", files={"file": ("a.png", png_bytes(fresh(SMALL)))},
                                 data={"operation": "remove-background"}, headers=headers)
    assert sixth.status_code == 429 and sixth.headers["content-type"] == "application/problem+json"
    assert sixth.json()["type"] == "/problems/quota-exceeded"
    assert 0 < int(sixth.headers["Retry-After"]) <= 24 * 3600
    # A new device token from the same address does not start over.
    fresh_device = await anonymous.post("/v1/jobs", files={"file": ("a.png", png_bytes(fresh(SMALL)))},
                                        data={"operation": "remove-background"},
                                        headers={"X-Forwarded-For": address})
    assert fresh_device.status_code == 429


async def test_anonymous_devices_cannot_use_what_their_tier_leaves_out(anonymous):
    response = await anonymous.post("/v1/jobs", data={"operation": "text-to-image", "params": '{"prompt": "a cat"}'},
                                    headers={"X-Forwarded-For": "10.200.0.1"})
    assert response.status_code == 403 and response.json()["type"] == "/problems/operation-not-allowed"


async def test_a_stage_failing_twice_then_succeeding_completes_the_job_once(gateway, s3, settings):
    """The input vanishes from S3 under the workers (a real failure, retryable), and comes back
    after the second failure: the third attempt succeeds."""
    photo = png_bytes(fresh(SMALL))
    workers = [line.split()[0] for line in supervisorctl("status").splitlines()
               if line.startswith("services:gpu-inference")]
    supervisorctl("signal", "STOP", *workers)
    try:
        job = (await submit(gateway, photo)).json()
        prefix = tenant_prefix(settings.required_keyring(), "tests")  # the tenant of the api_key fixture
        inputs = s3.list_objects_v2(Bucket=settings.s3.bucket, Prefix=f"{prefix}/{job['job_id']}/input/")
        key = next(o["Key"] for o in inputs["Contents"])  # one listing page holds the tenant's first 1000 only
        original = s3.get_object(Bucket=settings.s3.bucket, Key=key)["Body"].read()
        s3.delete_object(Bucket=settings.s3.bucket, Key=key)
    finally:
        supervisorctl("signal", "CONT", *workers)
    await events_while(job, lambda events: sum(e["type"] == "retrying" for e in events) < 2)
    s3.put_object(Bucket=settings.s3.bucket, Key=key, Body=original, ContentType="image/png")

    events = await events_until(job)
    types = [e["type"] for e in events]
    assert types.count("completed") == 1 and types[-1] == "completed", types
    retries = [e for e in events if e["type"] == "retrying"]
    assert [(r["attempt"], r["max_attempts"]) for r in retries] == [(2, 3), (3, 3)]
    assert all("NoSuchKey" in r["reason"] or "Not Found" in r["reason"] for r in retries)
    assert download(events[-1]["results"][0]).size == (64, 64)


async def test_a_poison_message_lands_in_the_dead_letter_topic():
    settings = PlatformSettings()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    dead = await partitions(settings, [DEAD_LETTERS])
    consumer.assign(dead)
    for tp, offset in (await consumer.end_offsets(dead)).items():
        consumer.seek(tp, offset)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    key = f"poison-{uuid.uuid4().hex}".encode()
    await producer.send_and_wait(JOBS_SUBMITTED, b"\xff\xfe this is not a protobuf message", key=key)
    await producer.stop()
    try:
        found = None
        async with asyncio.timeout(60):
            while found is None:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    found = next((r for r in records if r.key == key), found)
        headers = {name: value.decode() for name, value in found.headers}
        assert found.value == b""  # a reference to the message, never its value (photocraft_common.kafka)
        assert headers["source-value-bytes"] == str(len(b"\xff\xfe this is not a protobuf message"))
        assert headers["source-topic"] == JOBS_SUBMITTED and headers["error-type"] == "DecodeError"
        assert headers["error"]
    finally:
        await consumer.stop()


async def job_records(settings: PlatformSettings, job_id: str, start: dict[TopicPartition, int],
                      enough=None, timeout_s: float = 60) -> list[ConsumerRecord]:
    """The records keyed by ``job_id`` from the offsets ``start`` on: until ``enough(records)`` holds,
    or, without ``enough``, up to the partitions' ends as they are now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(start))
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        ends = await consumer.end_offsets(list(start))
        found: list[ConsumerRecord] = []

        async def more() -> bool:
            if enough is not None:
                return not enough(found)
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        async with asyncio.timeout(timeout_s):
            while await more():
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    found += [r for r in records if r.key == job_id.encode()]
        return found
    finally:
        await consumer.stop()


async def handled_by_the_scheduler(settings: PlatformSettings, record: ConsumerRecord, timeout_s: float = 60) -> None:
    """Wait until the scheduler's consumer group has committed past ``record``: it commits once its handler
    has finished."""
    tp = TopicPartition(record.topic, record.partition)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        async with asyncio.timeout(timeout_s):
            while (committed := (await admin.list_consumer_group_offsets(SCHEDULER_GROUP, partitions=[tp])).get(tp)) \
                    is None or committed.offset <= record.offset:
                await asyncio.sleep(0.1)  # a poll of the scheduler's progress
    finally:
        await admin.close()


def analysis_result(records: list[ConsumerRecord]) -> ConsumerRecord | None:
    """The first TaskResult of an ``analyze`` stage among ``records``."""
    return next((r for r in records if parse(TaskResult, r.value).stage == "analyze"), None)


async def test_a_cancelled_job_runs_no_further_stage(gateway, settings):
    noisy = np.clip(fresh(data.astronaut()[:256, :256]) + np.random.default_rng(1).normal(0, 25, (256, 256, 3)),
                    0, 255).astype(np.uint8)
    results_start = await end_offsets(settings, [TASK_RESULTS])
    tasks_start = await end_offsets(settings, [model_topic(m) for m in MODELS])
    job = (await submit(gateway, png_bytes(noisy), operation="restore", params='{"upscale": 2}')).json()
    await events_until(job, stop={"started"})  # the analysis is under way (or, a small photo, just done)
    cancelled_ms = time.time() * 1000
    response = await gateway.delete(f"/v1/jobs/{job['job_id']}")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"

    events = await events_until(job, timeout_s=60)
    assert events[-1]["type"] == "cancelled"
    # The analysis ends after the cancellation; once the scheduler has handled its result, it would have
    # published the next stage's task, were it to run one.
    results = await job_records(settings, job["job_id"], results_start, enough=analysis_result)
    await handled_by_the_scheduler(settings, analysis_result(results))
    records = await job_records(settings, job["job_id"], tasks_start)
    tasks = [parse(TaskDispatched, r.value).stage for r in records]
    assert tasks[0] == "analyze"
    # The worker's `started` goes out while the analysis runs, so the scheduler may have released the next
    # stage before the cancellation came; none may be published after it.
    assert [r.timestamp for r in records[1:] if r.timestamp >= cancelled_ms] == [], "a task after cancelling"
    after = await events_until(job, timeout_s=30)
    assert [e["seq"] for e in after] == [e["seq"] for e in events], "nothing may happen after cancelling"
    started = [e["stage"] for e in events if e["type"] == "started"]
    assert started and started == tasks[:len(started)]  # only stages released before the cancellation
    status = await gateway.get(f"/v1/jobs/{job['job_id']}")
    assert status.json()["status"] == "cancelled"
    assert (await gateway.delete(f"/v1/jobs/{job['job_id']}")).json()["status"] == "cancelled"


async def test_killing_the_scheduler_mid_load_loses_and_duplicates_nothing(gateway):
    # All at once: a few go to the workers, the rest wait in the scheduler's queue.
    jobs = [r.json() for r in await asyncio.gather(*(submit(gateway, png_bytes(fresh(SMALL))) for _ in range(24)))]
    seen: dict[str, list[dict]] = {}  # each job's events so far
    under_way = asyncio.Event()  # a worker has started a task that the scheduler released

    def follow(job: dict) -> asyncio.Task:
        def going_on(events: list[dict]) -> bool:
            seen[job["job_id"]] = events
            if events[-1]["type"] == "started":
                under_way.set()
            return events[-1]["type"] not in TERMINAL
        return asyncio.create_task(events_while(job, going_on, timeout_s=240))

    followers = [follow(job) for job in jobs]
    await asyncio.wait_for(under_way.wait(), 120)
    ended = sum(events[-1]["type"] in TERMINAL for events in seen.values())
    assert ended < len(jobs), "every job had ended before the kill: it would prove nothing"
    supervisorctl("signal", "KILL", "services:scheduler")  # supervisord starts it again
    killed_at = datetime.now(UTC)
    results = await asyncio.gather(*followers)
    for events in results:
        types = [e["type"] for e in events]
        assert types.count("completed") == 1 and types[-1] == "completed", types
        assert types.count("stage_completed") == 1 and types.count("queued") == 1
    assert "RUNNING" in supervisorctl("status", "services:scheduler")
    # Only the scheduler completes jobs: those it completed after the kill were in flight when it died.
    finished_later = [events for events in results if datetime.fromisoformat(events[-1]["time"]) > killed_at]
    assert finished_later, "no job was left for the restarted scheduler: the kill interrupted nothing"


async def test_batches_of_up_to_fifty(gateway):
    photos = [("files", (f"p{i}.png", png_bytes(fresh(SMALL)))) for i in range(3)]
    response = await gateway.post("/v1/batches", files=photos, data={"operation": "remove-background"})
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["total"] == 3 and len(batch["jobs"]) == 3 and all(j["lane"] == "heavy" for j in batch["jobs"])

    messages = await events_while(batch, lambda events: True)  # until the batch's stream closes
    progress = [m for m in messages if m["type"] == "batch_progress"]
    assert [(m["done"], m["total"]) for m in progress] == [(1, 3), (2, 3), (3, 3)]
    view = (await gateway.get(f"/v1/batches/{batch['batch_id']}")).json()
    assert view["done"] == 3 and set(view["jobs"].values()) == {"completed"}

    fifty_one = [("files", (f"p{i}.png", png_bytes(SMALL))) for i in range(51)]
    too_many = await gateway.post("/v1/batches", files=fifty_one, data={"operation": "remove-background"})
    assert too_many.status_code == 422 and too_many.json()["type"] == "/problems/batch-too-large"


async def test_an_unknown_api_key_is_refused(anonymous):
    response = await anonymous.post("/v1/jobs", files={"file": ("a.png", png_bytes(SMALL))},
                                    data={"operation": "remove-background"},
                                    headers={"Authorization": "Bearer pc_not-a-key"})
    assert response.status_code == 401 and response.json()["type"] == "/problems/invalid-api-key"
