"""The scheduler's handlers in-process: its FastStream app (main.create_app) on FastStream's in-memory
Kafka (TestKafkaBroker), with the real Redis and S3. Redis is database 6, apart from the running
platform's database 0, so the platform's own scheduler never sees these jobs, queues or models; the
test plays the gateway (job records, JobSubmitted) and the gpu-inference workers (models available,
task slots, TaskResults)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from faststream.kafka import TestKafkaBroker

from photocraft_common.capacity import report_capacity
from photocraft_common.contracts import (
    JobCancelled,
    JobEvent,
    JobSubmitted,
    ObjectRef,
    TaskDispatched,
    TaskError,
    TaskOutput,
    TaskResult,
    parse,
)
from photocraft_common.jobs import JobStatus, JobStore
from photocraft_common.kafka import publish
from photocraft_common.models import ModelDirectory
from photocraft_common.redis_client import make_redis
from photocraft_common.reuse import cache_key, output_id
from photocraft_common.settings import RedisSettings
from photocraft_common.storage import ObjectStore, sibling_key
from photocraft_common.topics import JOB_EVENTS, JOBS_CANCELLED, JOBS_SUBMITTED, TASK_RESULTS, model_topic
from photocraft_scheduler.main import create_app
from photocraft_scheduler.scheduler import Scheduler
from photocraft_scheduler.settings import SchedulerSettings

REDIS_URL = "redis://127.0.0.1:6379/6"  # this test's own database (test_secured_kafka uses 5)
MODELS = ["oidn", "tone", "retouch"]
RETRY_S = 0.05


class Harness:
    """The app's broker under TestKafkaBroker, what it publishes, and the Redis it works on."""

    def __init__(self, broker, redis, settings: SchedulerSettings) -> None:
        self.broker, self.redis, self.settings = broker, redis, settings
        self.jobs = JobStore(redis, settings.job_ttl_s)
        self.tasks: list[TaskDispatched] = []
        self.states_at_publish: list[str] = []  # each task's stage state when its message went out
        self.events: list[JobEvent] = []

    async def submit(self, operation: str, params: dict, tenant: str = "", content_id: str = "") -> JobSubmitted:
        job_id, tenant = uuid.uuid4().hex, tenant or new_tenant()
        photo = ObjectRef(bucket=self.settings.s3.bucket, key=f"{tenant}/{job_id}/input/photo.png", role="image",
                          content_type="image/png", width=64, height=64, content_id=content_id)
        await self.jobs.create(job_id, tenant, operation, json.dumps(params), photo, token="t", tier="pro",
                               lane="standard")
        job = JobSubmitted(job_id=job_id, tenant_id=tenant, operation=operation, params_json=json.dumps(params),
                           input=photo, tier="pro", lane="standard")
        await publish(self.broker, JOBS_SUBMITTED, job)
        return job

    async def result(self, task: TaskDispatched, *objects: ObjectRef, error: TaskError | None = None) -> None:
        outcome = {"error": error} if error else {"output": TaskOutput(objects=objects)}
        await publish(self.broker, TASK_RESULTS, TaskResult(task_id=task.task_id, job_id=task.job_id,
                                                            stage=task.stage, model=task.model,
                                                            attempt=task.attempt, worker_id="inprocess", **outcome))

    def kinds(self, job_id: str) -> list[str]:
        return [e.WhichOneof("kind") for e in self.events if e.job_id == job_id]

    def tasks_of(self, job_id: str) -> list[TaskDispatched]:
        return [t for t in self.tasks if t.job_id == job_id]

    async def stage_state(self, job_id: str, stage: str) -> str | None:
        raw = await self.redis.hget(f"photocraft:job:{job_id}:stages", stage)
        return raw.decode() if raw else None


def new_tenant() -> str:
    return f"inprocess-{uuid.uuid4().hex[:8]}"


async def clear(redis) -> None:
    async for key in redis.scan_iter(match="photocraft:*"):
        await redis.delete(key)


@pytest.fixture
async def harness():
    settings = SchedulerSettings(redis=RedisSettings(url=REDIS_URL), retry_base_s=RETRY_S, retry_max_s=RETRY_S)
    redis = make_redis(settings.redis)
    await clear(redis)
    await ModelDirectory(redis).publish_available(MODELS, ttl_s=600)
    await report_capacity(redis, "inprocess-worker", MODELS, slots=4, ttl_s=600)
    app = create_app(settings)
    h = Harness(app.broker, redis, settings)

    for model in MODELS:
        @app.broker.subscriber(model_topic(model))
        async def worker(body: bytes) -> None:
            task = parse(TaskDispatched, body)
            h.states_at_publish.append(await h.stage_state(task.job_id, task.stage))
            h.tasks.append(task)

    @app.broker.subscriber(JOB_EVENTS)
    async def notifier(body: bytes) -> None:
        h.events.append(parse(JobEvent, body))

    async with TestKafkaBroker(app.broker):
        yield h
    await clear(redis)
    await redis.aclose()


async def test_a_job_runs_stage_by_stage_to_its_completed_event(harness):
    job = await harness.submit("enhance", {"scale": 1, "denoise": 0.5})  # denoise, then tone
    (denoise,) = harness.tasks_of(job.job_id)
    assert (denoise.stage, denoise.model, denoise.attempt, denoise.output_format) == ("denoise", "oidn", 1, "png")
    assert json.loads(denoise.params_json) == {"strength": 0.5} and list(denoise.inputs) == [job.input]
    assert (denoise.progress_from, denoise.progress_to) == (0, 50)
    assert harness.states_at_publish == ["dispatched:1"]  # recorded before it was published
    assert harness.kinds(job.job_id) == ["queued"]
    assert (await harness.jobs.get(job.job_id)).status is JobStatus.RUNNING

    denoised = ObjectRef(bucket="photocraft", key=f"{job.tenant_id}/{job.job_id}/denoise.png", role="image")
    await harness.result(denoise, denoised)
    tone = harness.tasks_of(job.job_id)[-1]
    assert (tone.stage, tone.model, list(tone.inputs)) == ("tone", "tone", [denoised])
    assert json.loads(tone.params_json)["quality"] == 92 and (tone.progress_from, tone.progress_to) == (50, 100)
    assert await harness.stage_state(job.job_id, "denoise") == "done"

    toned = ObjectRef(bucket="photocraft", key=f"{job.tenant_id}/{job.job_id}/tone.png", role="image")
    await harness.result(tone, toned)
    assert harness.kinds(job.job_id) == ["queued", "stage_completed", "stage_completed", "completed"]
    events = {e.event_id: e for e in harness.events if e.job_id == job.job_id}
    assert events[f"{job.job_id}:denoise:done"].stage_completed.output == denoised
    assert list(events[f"{job.job_id}:end"].completed.results) == [toned]
    record = await harness.jobs.get(job.job_id)
    assert record.status is JobStatus.COMPLETED and record.results == [toned]
    assert 0 < await harness.redis.ttl(f"photocraft:job:{job.job_id}:stages") <= harness.settings.job_ttl_s

    await harness.result(tone, toned)  # delivered twice: nothing new but the same end event again
    assert harness.kinds(job.job_id)[4:] == ["completed"] and len(harness.tasks_of(job.job_id)) == 2


async def test_a_retryable_error_is_retried_after_its_delay_and_a_final_one_fails_the_job(harness):
    job = await harness.submit("retouch", {})
    (first,) = harness.tasks_of(job.job_id)
    await harness.result(first, error=TaskError(code="s3", message="NoSuchKey", retryable=True))
    retrying = [e.retrying for e in harness.events if e.job_id == job.job_id and e.WhichOneof("kind") == "retrying"]
    assert [(r.stage, r.attempt, r.max_attempts, r.reason) for r in retrying] == [("retouch", 2, 3, "s3: NoSuchKey")]
    assert RETRY_S / 2 <= retrying[0].delay_s <= RETRY_S
    assert await harness.stage_state(job.job_id, "retouch") == "queued:2"
    assert len(harness.tasks_of(job.job_id)) == 1  # waiting out its delay

    # Another replica's tick releases it once the delay is over.
    replica = Scheduler(harness.broker, harness.redis, ObjectStore(harness.settings.s3), harness.settings)
    deadline = time.monotonic() + 10
    while len(harness.tasks_of(job.job_id)) == 1 and time.monotonic() < deadline:
        await replica.tick(check_overdue=False)
        await asyncio.sleep(RETRY_S / 5)
    second = harness.tasks_of(job.job_id)[-1]
    assert (second.task_id, second.attempt, list(second.inputs)) == (f"{job.job_id}/retouch/2", 2, [job.input])

    await harness.result(first, ObjectRef(key="late.png", role="image"))  # attempt 1, late: stale, ignored
    assert await harness.stage_state(job.job_id, "retouch") == "dispatched:2"
    await harness.result(second, error=TaskError(code="invalid-image", message="not a photo", retryable=False))
    end = harness.events[-1]
    assert end.event_id == f"{job.job_id}:end" and end.WhichOneof("kind") == "failed"
    assert (end.failed.code, end.failed.message, end.failed.stage) == ("invalid-image", "not a photo", "retouch")
    assert (await harness.jobs.get(job.job_id)).status is JobStatus.FAILED
    assert harness.kinds(job.job_id) == ["queued", "retrying", "failed"]


async def test_a_result_known_to_exist_is_reused_without_a_task(harness):
    store = ObjectStore(harness.settings.s3)
    await ModelDirectory(harness.redis).record_weights("retouch", "inprocess-weights")
    content_id = uuid.uuid4().hex
    params = {"skin": 0.5, "teeth": 0.5, "eyes": 0.5, "quality": 92}  # retouch's defaults, as sent
    # What a worker leaves behind for an identical earlier job of the tenant.
    tenant = new_tenant()
    result_id = output_id("retouch", "inprocess-weights", params, "png", [content_id])
    key = cache_key(harness.settings.required_keyring(), tenant, "retouch", result_id, "png")
    cached = await store.put(key, b"not really a png", "image/png", 64, 64)
    cached.role = "image"
    await store.write_manifest(key, TaskOutput(objects=[cached]))
    try:
        job = await harness.submit("retouch", {}, tenant=tenant, content_id=content_id)
        assert harness.tasks_of(job.job_id) == []
        assert harness.kinds(job.job_id) == ["queued", "stage_completed", "completed"]
        record = await harness.jobs.get(job.job_id)
        assert record.status is JobStatus.COMPLETED and [r.key for r in record.results] == [key]
    finally:
        for stale in (key, sibling_key(key, "manifest.json")):
            store.client.delete_object(Bucket=store.bucket, Key=stale)


async def test_a_cancelled_job_announces_its_end_and_its_waiting_stage_is_dropped(harness):
    await report_capacity(harness.redis, "inprocess-worker", MODELS, slots=0, ttl_s=600)  # every slot busy
    job = await harness.submit("retouch", {})
    assert harness.tasks_of(job.job_id) == [] and await harness.stage_state(job.job_id, "retouch") == "queued:1"
    await harness.jobs.set_status(job.job_id, JobStatus.CANCELLED, error_code="cancelled",
                                  error_message="changed my mind")
    await publish(harness.broker, JOBS_CANCELLED, JobCancelled(job_id=job.job_id, tenant_id=job.tenant_id))
    assert harness.events[-1].cancelled.reason == "changed my mind"
    await report_capacity(harness.redis, "inprocess-worker", MODELS, slots=4, ttl_s=600)
    replica = Scheduler(harness.broker, harness.redis, ObjectStore(harness.settings.s3), harness.settings)
    await replica.tick(check_overdue=False)  # its turn comes: dropped, never published, its end announced again
    assert harness.tasks_of(job.job_id) == []
    assert await harness.redis.hlen("photocraft:sched:out") == 0
    assert not await harness.redis.exists(f"photocraft:sched:task:{job.job_id}/retouch/1")
    ends = {e.event_id for e in harness.events if e.job_id == job.job_id and e.WhichOneof("kind") == "cancelled"}
    assert list(dict.fromkeys(harness.kinds(job.job_id))) == ["queued", "cancelled"] and len(ends) == 1


async def test_a_stage_recorded_but_never_queued_is_queued_when_its_message_comes_again(harness):
    # A replica died between recording a stage as queued and queueing it; Kafka redelivers the
    # submission it had not committed.
    job = JobSubmitted(job_id=uuid.uuid4().hex, tenant_id=new_tenant(), operation="retouch", params_json="{}",
                       tier="pro", lane="standard")
    job.input.CopyFrom(ObjectRef(bucket=harness.settings.s3.bucket, key=f"{job.tenant_id}/{job.job_id}/in.png",
                                 role="image", content_type="image/png", width=64, height=64))
    await harness.jobs.create(job.job_id, job.tenant_id, "retouch", "{}", job.input, token="t", tier="pro",
                              lane="standard")
    await harness.redis.hset(f"photocraft:job:{job.job_id}:stages", "retouch", "queued:1")
    await publish(harness.broker, JOBS_SUBMITTED, job)
    (task,) = harness.tasks_of(job.job_id)
    assert (task.stage, task.attempt) == ("retouch", 1) and harness.states_at_publish[-1] == "dispatched:1"
    await publish(harness.broker, JOBS_SUBMITTED, job)  # once more: the queue holds it, nothing new
    assert len(harness.tasks_of(job.job_id)) == 1


async def test_a_result_recorded_by_a_replica_that_died_still_moves_the_job_on(harness):
    job = await harness.submit("enhance", {"scale": 1, "denoise": 0.5})  # denoise, then tone
    (denoise,) = harness.tasks_of(job.job_id)
    denoised = ObjectRef(bucket="photocraft", key=f"{job.tenant_id}/{job.job_id}/denoise.png", role="image")
    # The dying replica recorded denoise as done, then died before queueing tone.
    await harness.redis.hset(f"photocraft:job:{job.job_id}:outputs", "denoise",
                             TaskOutput(objects=[denoised]).SerializeToString())
    await harness.redis.hset(f"photocraft:job:{job.job_id}:stages", "denoise", "done")
    await harness.result(denoise, denoised)  # redelivered
    assert [t.stage for t in harness.tasks_of(job.job_id)] == ["denoise", "tone"]
