"""Honest outcomes on the real platform: a failed job, a job cancelled before any stage ran and a no-op
job give their edit back to the daily quota, a completed one keeps it; a dead-lettered submission ends
its job with a `failed` event; a face stage run on another model than GFPGAN says so; a stage that changes
nothing is not sent to Triton.

Each test is a tenant of the free tier of its own (50 edits a day), and reads its quota counter, named
in its job's record (photocraft_common.jobs, quotas)."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from skimage import data

from photocraft_common.jobs import JobStatus, JobStore
from photocraft_common.quotas import Quotas
from photocraft_common.topics import JOBS_SUBMITTED

from .helpers import GATEWAY, absent, download, events_until, fresh, png_bytes, submit, supervisorctl, tenant_key

SMALL = data.astronaut()[::8, ::8]  # 64 x 64: quick jobs
FACE = np.ascontiguousarray(data.astronaut()[40:296, 128:384])  # the astronaut's face, 256 x 256
NOTIFIER = "ws://127.0.0.1:8081"
TRITON_HTTP = ("http://127.0.0.1:8000", "http://127.0.0.1:8100")  # the local stack's two instances


@pytest.fixture
async def free():
    """A client of the gateway with the API key of a new free-tier tenant."""
    key = tenant_key(f"honest-{uuid.uuid4().hex[:10]}", "free")
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        yield client


async def charged(redis, settings, job_id: str) -> tuple[str, int]:
    """The job's ``edit_returned`` and the edits counted now on its quota counter."""
    record = await JobStore(redis, settings.job_ttl_s).get(job_id)
    [counter] = record.charge.keys  # a tenant's: one counter
    return record.edit_returned, await Quotas(redis).used(counter)


def paused(program_prefix: str):
    """The platform's processes whose supervisor name starts with ``program_prefix``."""
    return [line.split()[0] for line in supervisorctl("status").splitlines() if line.startswith(program_prefix)]


async def test_a_completed_job_keeps_its_edit_and_a_failed_one_gets_it_back(free, redis, settings, s3):
    done = (await submit(free, png_bytes(fresh(SMALL)))).json()
    assert (await events_until(done))[-1]["type"] == "completed"
    assert await charged(redis, settings, done["job_id"]) == ("", 1)

    # The input vanishes from S3 before any worker reads it: every attempt fails (retryable), then the job.
    workers = paused("services:gpu-inference")
    supervisorctl("signal", "STOP", *workers)
    try:
        failing = (await submit(free, png_bytes(fresh(SMALL)))).json()
        record = await JobStore(redis, settings.job_ttl_s).get(failing["job_id"])
        s3.delete_object(Bucket=record.input.bucket, Key=record.input.key)
        assert await charged(redis, settings, failing["job_id"]) == ("", 2)
    finally:
        supervisorctl("signal", "CONT", *workers)
    events = await events_until(failing)

    assert events[-1]["type"] == "failed", events[-1]
    assert await charged(redis, settings, failing["job_id"]) == ("failed", 1)  # before the event went out
    assert await charged(redis, settings, done["job_id"]) == ("", 1)


async def test_a_job_cancelled_before_any_stage_ran_gets_its_edit_back(free, redis, settings):
    scheduler = paused("services:scheduler")
    supervisorctl("signal", "STOP", *scheduler)  # the job waits, unseen, in jobs.submitted
    try:
        job = (await submit(free, png_bytes(fresh(SMALL)))).json()
        assert (await charged(redis, settings, job["job_id"]))[1] == 1
        cancelled = await free.delete(f"/v1/jobs/{job['job_id']}")
    finally:
        supervisorctl("signal", "CONT", *scheduler)
    assert cancelled.json()["status"] == "cancelled"
    events = await events_until(job)

    assert events[-1]["type"] == "cancelled"
    assert "started" not in [e["type"] for e in events]
    assert await charged(redis, settings, job["job_id"]) == ("cancelled-early", 0)


async def test_a_no_op_job_gets_its_edit_back(free, redis, settings):
    nothing = {"scale": 1, "denoise": 0, "contrast": 0, "saturation": 0, "sharpen": 0}  # tone at 0 only
    job = (await submit(free, png_bytes(fresh(SMALL)), operation="enhance", params=json.dumps(nothing))).json()
    something = (await submit(free, png_bytes(fresh(SMALL)), operation="enhance",
                              params=json.dumps({**nothing, "contrast": 0.5}))).json()

    assert (await events_until(job))[-1]["type"] == "completed"
    assert (await events_until(something))[-1]["type"] == "completed"
    assert (await charged(redis, settings, job["job_id"]))[0] == "no-op"
    assert await charged(redis, settings, something["job_id"]) == ("", 1)


async def inferences(model: str) -> int:
    """Requests ``model`` has run on every Triton instance (0 where it is not loaded)."""
    total = 0
    async with httpx.AsyncClient(timeout=10) as http:
        for base in TRITON_HTTP:
            response = await http.get(f"{base}/v2/models/{model}/stats")
            if response.status_code == 200:
                total += sum(int(s["inference_stats"]["success"]["count"]) for s in response.json()["model_stats"])
    return total


async def test_a_stage_that_changes_nothing_is_not_sent_to_triton(free):
    nothing = {"scale": 1, "denoise": 0, "contrast": 0, "saturation": 0, "sharpen": 0}  # only tone, at 0
    photo = fresh(SMALL)
    warm = (await submit(free, png_bytes(fresh(SMALL)), operation="enhance",
                         params=json.dumps({**nothing, "contrast": 0.5}))).json()
    assert (await events_until(warm))[-1]["type"] == "completed"  # tone is loaded and has run
    before = await inferences("tone")
    job = (await submit(free, png_bytes(photo), operation="enhance", params=json.dumps(nothing))).json()
    events = await events_until(job)

    assert events[-1]["type"] == "completed", events[-1]
    assert "tone" in [e["stage"] for e in events if e["type"] == "stage_completed"]
    assert np.array_equal(np.asarray(download(events[-1]["results"][0]).convert("RGB")), photo)
    assert await inferences("tone") == before


async def test_a_dead_lettered_submission_ends_its_job_failed(redis, settings):
    """A JobSubmitted that does not decode, keyed by a job recorded as the gateway records one: the
    scheduler dead-letters it, and its hook fails the job and gives its edit back."""
    tenant, job_id, token = f"honest-{uuid.uuid4().hex[:10]}", uuid.uuid4().hex, uuid.uuid4().hex
    quotas, jobs = Quotas(redis), JobStore(redis, settings.job_ttl_s)
    [charge] = (await quotas.take({f"tenant:{tenant}": 5}, 1)).charges()
    await jobs.create(job_id, tenant, "retouch", "{}", None, token, "free", "fast", charge=charge)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(JOBS_SUBMITTED, b"\xff\xfe not a JobSubmitted", key=job_id.encode())
    finally:
        await producer.stop()

    events = await events_until({"events_url": f"{NOTIFIER}/v1/jobs/{job_id}/events", "token": token}, timeout_s=60)

    assert [e["type"] for e in events] == ["failed"]
    assert events[-1]["code"] == "not-processed" and "could not process" in events[-1]["message"]
    record = await jobs.get(job_id)
    assert (record.status, record.error_code, record.edit_returned) == (JobStatus.FAILED, "not-processed", "failed")
    assert await quotas.used(charge.keys[0]) == 0


async def test_a_face_stage_without_gfpgan_says_what_ran_instead(gateway):
    async with absent("gfpgan"):
        job = (await submit(gateway, png_bytes(fresh(FACE)), operation="restore")).json()
        events = await events_until(job, timeout_s=240)

    assert events[-1]["type"] == "completed", events[-1]
    assert "faces" in [e["stage"] for e in events if e["type"] == "stage_completed"], "the analysis found the face"
    assert "faces: model gfpgan is not installed; ran retouch instead" in events[-1]["warnings"]
