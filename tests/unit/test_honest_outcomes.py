"""Honest outcomes, with nothing running: which ended jobs give their edit back (outcomes.py), the edit
given back once however many replicas end a job (quotas.py, endings.py on fakeredis and FastStream's
TestKafkaBroker), a stage on a fallback model saying so (plan.py), a dead-lettered message ending what
waited on it (kafka.py), and a batch whose publishing fails part-way (intake, handover.py, the gateway's
batch routes in-process)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError
from fakeredis import FakeAsyncRedis, FakeServer
from fastapi.testclient import TestClient
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from google.protobuf.message import DecodeError

from photocraft_common.batches import BatchStore
from photocraft_common.contracts import JobEvent, TaskOutput, parse
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import JobStatus, JobStore, job_key
from photocraft_common.kafka import handle_or_dead_letter
from photocraft_common.quotas import Charge, Quotas
from photocraft_common.tiers import Tier
from photocraft_common.topics import DEAD_LETTERS, JOB_EVENTS, JOBS_SUBMITTED
from photocraft_gateway.app import create_app
from photocraft_scheduler.endings import Endings
from photocraft_scheduler.outcomes import edit_returned, is_no_op
from photocraft_scheduler.plan import Dispatch, Fail, Plan, Skip, fallback_warning, warned
from photocraft_scheduler.stages import StageStore, State

from .test_gateway_routes import MODELS, Gateway, assert_problem, png, settings  # noqa: F401 (settings)
from .test_plan import EVERY_MODEL, PHOTO, image, output, record
from .test_topics import record as consumer_record

NOTHING_TO_RESTORE = {"stages": {name: {"run": False} for name in ("descratch", "denoise", "dejpeg", "balance", "faces",
                                                                   "colorize")}}


def run(plan: Plan, worker, available: set[str] = EVERY_MODEL) -> tuple[dict[str, str], dict[str, TaskOutput]]:
    """Carry ``plan`` to its end as the scheduler does, ``worker(dispatch)`` giving each dispatched stage's
    output; returns the stage states and recorded outputs."""
    states: dict[str, str] = {}
    outputs: dict[str, TaskOutput] = {}
    while not plan.is_complete(states):
        for stage in plan.ready(states):
            match plan.decide(stage, states, outputs, available):
                case Skip() as skip:
                    outputs[stage.name], states[stage.name] = skip.output, State.SKIPPED
                case Dispatch() as dispatch:
                    outputs[stage.name] = plan.output_of(stage.name, worker(dispatch), outputs, dispatch.model)
                    states[stage.name] = State.DONE
    return states, outputs


def worker(analysis: dict | None = None, info: dict | None = None):
    """A worker whose analysis says ``analysis`` and whose other stages make an image (reporting ``info``)."""
    def work(dispatch: Dispatch) -> TaskOutput:
        if dispatch.stage == "analyze":
            return output(info=analysis or {"stages": {}})
        return output(image(f"t1/j1/{dispatch.stage}.png"), info=info)
    return work


# ---- a stage on a fallback model ----------------------------------------------------------------

def test_a_stage_on_a_fallback_model_says_so_in_the_jobs_warnings():
    plan = Plan.of(record("restore"))
    faces = plan.stage("faces")
    said = "model gfpgan is not installed; ran retouch instead"
    assert fallback_warning(faces, "retouch") == said
    assert fallback_warning(faces, "gfpgan") == fallback_warning(faces, "") == ""

    analysis = {"stages": {"faces": {"run": True}}}
    _, fallen_back = run(plan, worker(analysis), EVERY_MODEL - {"gfpgan"})
    _, preferred = run(plan, worker(analysis))
    assert f"faces: {said}" in plan.completion(fallen_back).warnings
    assert not any("ran" in w for w in plan.completion(preferred).warnings)
    reused = warned(output(image("faces.png")), said)  # a reused result gets it too (Dispatch.warning)
    assert list(warned(reused, said).warnings) == [said]  # once


# ---- which ended jobs give their edit back --------------------------------------------------------

@pytest.mark.parametrize(("states", "returned"), [
    ({}, "cancelled-early"),  # not yet taken in by the scheduler
    ({"analyze": State.queued(1)}, "cancelled-early"),  # waiting in the fair-share queue
    ({"analyze": State.SKIPPED}, "cancelled-early"),
    ({"analyze": State.dispatched(1)}, ""),  # handed to a worker
    ({"analyze": State.queued(2)}, ""),  # waiting for a retry: attempt 1 ran
    ({"analyze": State.DONE, "denoise": State.queued(1)}, ""),
])
def test_a_job_cancelled_before_any_stage_ran_gets_its_edit_back(states, returned):
    assert edit_returned(record("restore", status=JobStatus.CANCELLED), states, {}) == returned


def test_a_failed_job_gets_its_edit_back_and_a_running_one_keeps_it():
    assert edit_returned(record("enhance", status=JobStatus.FAILED), {"denoise": State.DONE}, {}) == "failed"
    assert edit_returned(record("enhance", status=JobStatus.RUNNING), {}, {}) == ""
    assert edit_returned(record("no-such-operation", status=JobStatus.COMPLETED), {}, {}) == ""


@pytest.mark.parametrize(("operation", "params", "work", "no_op"), [
    ("restore", {}, worker(NOTHING_TO_RESTORE), True),  # analysis and tone at 0 only
    ("restore", {}, worker({"stages": {}}), False),  # every stage ran
    ("restore", {}, worker({"stages": {**NOTHING_TO_RESTORE["stages"], "faces": {"run": True}}}), False),
    ("restore", {}, worker({"stages": {**NOTHING_TO_RESTORE["stages"], "faces": {"run": True}}}, {"faces": 0}),
     True),  # the face model found no face
    ("restore", {}, worker({"stages": {**NOTHING_TO_RESTORE["stages"],
                                       "balance": {"run": True, "params": {"neutralise": 1.0}}}}), False),
    ("enhance", {"scale": 1, "denoise": 0, "contrast": 0, "saturation": 0, "sharpen": 0}, worker(), True),
    ("enhance", {"scale": 1, "denoise": 0, "contrast": 0, "saturation": 0.1, "sharpen": 0}, worker(), False),
    ("enhance", {}, worker(), False),
    ("retouch", {}, worker(info={"faces": 0}), True),
    ("retouch", {"skin": 0, "teeth": 0, "eyes": 0}, worker(info={"faces": 2}), True),
    ("retouch", {}, worker(info={"faces": 1}), False),
    ("remove-background", {}, worker(), False),
    ("text-to-image", {"prompt": "a lighthouse"}, worker(), False),
])
def test_a_completed_job_gets_its_edit_back_only_when_it_changed_nothing(operation, params, work, no_op):
    job = record(operation, params, status=JobStatus.COMPLETED)
    plan = Plan.of(job)
    states, outputs = run(plan, work)
    assert is_no_op(plan, states, outputs) is no_op
    assert edit_returned(job, states, outputs) == ("no-op" if no_op else "")


def test_a_job_that_has_not_completed_is_no_no_op():
    plan = Plan.of(record("retouch"))
    assert not is_no_op(plan, {}, {})


# ---- the edit goes back once, whoever ends the job -------------------------------------------------

async def test_charges_travel_with_the_job_record_and_go_back_once():
    redis = FakeAsyncRedis(server=FakeServer())
    quotas, jobs = Quotas(redis), JobStore(redis, 3600)
    grant = await quotas.take({"tenant:t1": 3}, 2)
    first, second = grant.charges()
    assert first.keys == second.keys == ("photocraft:quota:tenant:t1",) and first.member != second.member
    await jobs.create("j1", "t1", "retouch", "{}", PHOTO, "token", "free", "fast", charge=first)
    await jobs.create("j2", "t1", "retouch", "{}", PHOTO, "token", "free", "fast")
    recorded = await jobs.get("j1")
    assert recorded.charge == first and not (await jobs.get("j2")).charge and recorded.edit_returned == ""
    assert await quotas.used("photocraft:quota:tenant:t1") == 2

    returns = await asyncio.gather(*(quotas.return_edit(job_key("j1"), first, "failed") for _ in range(5)))

    assert sorted(returns) == [False] * 4 + [True]
    assert await quotas.used("photocraft:quota:tenant:t1") == 1
    assert (await jobs.get("j1")).edit_returned == "failed"
    assert not await quotas.return_edit(job_key("gone"), second, "failed")  # no record, no return
    assert not await quotas.return_edit(job_key("j2"), Charge(), "failed")
    assert (await quotas.take({"tenant:t1": 3}, 2)).granted  # room for two again
    assert (await quotas.take({}, 3)).charges() == [Charge()] * 3  # no quota: empty charges


@pytest.fixture
async def platform():
    """Two scheduler replicas' Endings on one fakeredis, and the events they publish (in-memory Kafka)."""
    broker, events = KafkaBroker(), []

    @broker.subscriber(JOB_EVENTS)
    async def notifier(body: bytes) -> None:
        events.append(parse(JobEvent, body))

    redis = FakeAsyncRedis(server=FakeServer())
    jobs, stages, batches, quotas = JobStore(redis, 3600), StageStore(redis, 3600), BatchStore(redis, 3600), \
        Quotas(redis)
    async with TestKafkaBroker(broker):
        replicas = [Endings(jobs, stages, batches, EventPublisher(broker), quotas) for _ in range(2)]
        yield jobs, stages, batches, quotas, replicas, events
    await redis.aclose()


async def test_two_replicas_and_redelivered_messages_give_an_edit_back_once(platform):
    jobs, stages, batches, quotas, (one, other), events = platform
    charges = (await quotas.take({"tenant:t1": 5}, 3)).charges()
    for job_id, charge in zip(("failed", "done", "cancelled"), charges, strict=True):
        await jobs.create(job_id, "t1", "retouch", "{}", PHOTO, "token", "free", "heavy", "b1", charge=charge)
    await batches.create("b1", "t1", "retouch", ["failed", "done", "cancelled"], "batch-token")
    await stages.record_output("done", "retouch", output(image("t1/done/retouch.png"), info={"faces": 1}))
    await stages.set_state("done", "retouch", State.DONE)
    await stages.set_state("cancelled", "retouch", State.queued(1))
    await jobs.set_status("cancelled", JobStatus.CANCELLED)  # as the gateway does

    await one.fail(await jobs.get("failed"), Fail("internal-error", "Triton restarting", "retouch"))
    await other.fail(await jobs.get("failed"), Fail("timeout", "no result", "retouch"))  # a late second end
    await one.complete(await jobs.get("done"), Plan.of(await jobs.get("done")))
    for replica in (one, other, one):  # JobCancelled, then the job's next messages
        await replica.announce(await jobs.get("cancelled"))

    assert await quotas.used("photocraft:quota:tenant:t1") == 1  # the completed job's edit only
    assert [(await jobs.get(j)).edit_returned for j in ("failed", "done", "cancelled")] == \
        ["failed", "", "cancelled-early"]
    assert (await jobs.get("failed")).error_code == "internal-error"  # the first end wins
    ends = {e.event_id: e.WhichOneof("kind") for e in events if e.job_id != "b1"}
    assert ends == {"failed:end": "failed", "done:end": "completed", "cancelled:end": "cancelled"}
    progress = [(e.batch_progress.done, e.batch_progress.failed) for e in events if e.job_id == "b1"]
    assert sorted(set(progress)) == [(0, 1), (1, 1), (1, 2)] and len(progress) == 3  # each job counted once


# ---- a dead-lettered message ends what waited on it -----------------------------------------------

async def test_a_dead_lettered_message_calls_its_hook_with_the_error():
    broker, letters, ended = KafkaBroker(), [], []

    @broker.subscriber(DEAD_LETTERS)
    async def collect(message: KafkaMessage) -> None:
        letters.append(message.raw_message)

    async def poison() -> None:
        raise DecodeError("Error parsing message")

    async def fine() -> None:
        return None

    async def end(error: BaseException) -> None:
        ended.append(error)

    async def broken_hook(error: BaseException) -> None:
        raise ConnectionError("Redis away")

    async with TestKafkaBroker(broker):
        await handle_or_dead_letter(broker, consumer_record(b"\xff"), fine, on_dead_letter=end)
        assert not letters and not ended
        await handle_or_dead_letter(broker, consumer_record(b"\xff"), poison, on_dead_letter=end)
        # A hook that keeps failing is retried for retry_for_s, then logged: the offset moves on.
        await handle_or_dead_letter(broker, consumer_record(b"\xfe"), poison, retry_for_s=0.2,
                                    on_dead_letter=broken_hook)
    assert [type(e) for e in ended] == [DecodeError] and len(letters) == 2


# ---- a batch whose publishing fails part-way ------------------------------------------------------

@pytest.fixture
def gateway(settings):  # noqa: F811
    gateway = Gateway()
    with TestClient(create_app(settings, gateway.connect)) as gateway.http:
        gateway.serve(MODELS)
        yield gateway


def kafka_refuses(gateway: Gateway, monkeypatch, submission: int, then_recovers: bool) -> None:
    """Kafka refuses the ``submission``-th JobSubmitted (1 for the first), and then every message or
    (``then_recovers``) none."""
    publish, submissions = gateway.platform.broker.publish, []

    async def flaky(message, topic, *args, **kwargs):
        submissions.extend([topic] if topic == JOBS_SUBMITTED else [])
        this_one = topic == JOBS_SUBMITTED and len(submissions) == submission
        if this_one or (not then_recovers and len(submissions) >= submission):
            raise KafkaConnectionError("no broker")
        return await publish(message, topic, *args, **kwargs)

    monkeypatch.setattr(gateway.platform.broker, "publish", flaky)


def job_ids(gateway: Gateway) -> list[str]:
    """Every job recorded in the gateway's Redis."""
    async def scan() -> list[str]:
        return [key.decode().split(":")[-1] async for key in gateway.platform.redis.scan_iter("photocraft:job:*")]
    return gateway.call(scan)


def test_a_batch_published_part_way_ends_consistent_and_answers(gateway, monkeypatch):
    key = {"Authorization": f"Bearer {gateway.api_key('acme', Tier.FREE)}"}
    kafka_refuses(gateway, monkeypatch, submission=3, then_recovers=True)
    files = [("files", (f"p{n}.png", png(20 + n, 20))) for n in range(5)]

    refused = gateway.http.post("/v1/batches", data={"operation": "remove-background"}, files=files, headers=key)

    assert_problem(refused, 503, "queue-unavailable")
    [batch_id] = {m.batch_id for m in gateway.submitted}
    published = [m.job_id for m in gateway.submitted]
    batch = gateway.batch(batch_id)
    assert batch.total == 5 and len(batch.job_ids) == 5 and batch.job_ids[:2] == published
    assert (batch.done, batch.failed) == (0, 3)  # the unpublished ones; the scheduler counts the cancelled ones
    view = gateway.http.get(f"/v1/batches/{batch_id}", headers=key)
    assert view.status_code == 200, view.text
    assert list(view.json()["jobs"].values()) == ["cancelled"] * 2 + ["failed"] * 3
    for job_id in batch.job_ids:
        job = gateway.job(job_id)
        assert job.edit_returned == "not-queued" and "could not be queued in full" in job.error_message
    assert [gateway.job(j).error_code for j in batch.job_ids] == ["cancelled"] * 2 + ["not-published"] * 3
    assert gateway.call(gateway.platform.quotas.used, "photocraft:quota:tenant:acme") == 0  # nothing charged
    assert [m.job_id for m in gateway.cancelled] == published  # the scheduler drops them
    cancelled = gateway.http.delete(f"/v1/batches/{batch_id}", headers=key)
    assert cancelled.status_code == 200 and cancelled.json()["jobs"] == view.json()["jobs"]


def test_a_batch_whose_first_submission_fails_ends_every_job(gateway, monkeypatch):
    key = {"Authorization": f"Bearer {gateway.api_key('acme', Tier.FREE)}"}
    kafka_refuses(gateway, monkeypatch, submission=1, then_recovers=False)
    files = [("files", (f"p{n}.png", png(20 + n, 20))) for n in range(3)]

    refused = gateway.http.post("/v1/batches", data={"operation": "remove-background"}, files=files, headers=key)
    monkeypatch.undo()

    assert_problem(refused, 503, "queue-unavailable")
    assert not gateway.submitted and len(job_ids(gateway)) == 3
    [batch_id] = {gateway.job(j).batch_id for j in job_ids(gateway)}
    view = gateway.http.get(f"/v1/batches/{batch_id}", headers=key).json()
    assert (view["total"], view["done"], view["failed"]) == (3, 0, 3)
    assert set(view["jobs"].values()) == {"failed"}
    assert gateway.call(gateway.platform.quotas.used, "photocraft:quota:tenant:acme") == 0


def test_a_job_kafka_refuses_fails_and_gives_its_edit_back(gateway, monkeypatch):
    key = {"Authorization": f"Bearer {gateway.api_key('acme', Tier.FREE)}"}
    kafka_refuses(gateway, monkeypatch, submission=1, then_recovers=False)
    refused = gateway.http.post("/v1/jobs", data={"operation": "remove-background"},
                                files={"file": ("p.png", png())}, headers=key)
    monkeypatch.undo()
    [failed] = [gateway.job(j) for j in job_ids(gateway)]
    accepted = gateway.http.post("/v1/jobs", data={"operation": "remove-background"},
                                 files={"file": ("p.png", png())}, headers=key)

    assert_problem(refused, 503, "queue-unavailable")
    assert (failed.status, failed.error_code, failed.edit_returned) == (JobStatus.FAILED, "not-published",
                                                                        "not-queued")
    assert accepted.status_code == 202
    job = gateway.job(accepted.json()["job_id"])
    assert job.charge.keys == ("photocraft:quota:tenant:acme",) and job.edit_returned == ""
    assert gateway.call(gateway.platform.quotas.used, "photocraft:quota:tenant:acme") == 1  # the accepted one
