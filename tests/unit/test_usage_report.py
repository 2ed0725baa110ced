"""What an ended job reports to the usage ledger (scheduler usage.py), with nothing running: outcomes,
stages run and reused, megapixels, compute seconds per model, and the report read back as the ledger's Usage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from faststream.kafka import KafkaBroker, TestKafkaBroker

from photocraft_common.batches import BatchStore
from photocraft_common.contracts import JobEvent, ObjectRef, TaskOutput, UsageReport, parse
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import JobStatus, JobStore
from photocraft_common.kafka import Unprocessable
from photocraft_common.quotas import Quotas
from photocraft_common.topics import JOB_EVENTS, USAGE_REPORTS
from photocraft_common.usage.ledger import Ledger, usage_of
from photocraft_common.usage.prices import Outcome
from photocraft_scheduler.endings import Endings
from photocraft_scheduler.ledger import LedgerWriter
from photocraft_scheduler.plan import Fail, Plan, reused
from photocraft_scheduler.stages import StageStore, State
from photocraft_scheduler.usage import outcome, usage_report

from .test_honest_outcomes import NOTHING_TO_RESTORE, run, worker
from .test_plan import PHOTO, image, output, record

ENDED_AT = datetime(2026, 11, 30, 12, 0, 1, 500000, tzinfo=UTC).timestamp()


def computed(out: TaskOutput, model: str, seconds: float) -> TaskOutput:
    out.model, out.compute_s = model, seconds
    return out


@pytest.mark.parametrize(("status", "returned", "expected"), [
    (JobStatus.COMPLETED, "", "completed"), (JobStatus.COMPLETED, "no-op", "no-op"),
    (JobStatus.FAILED, "failed", "failed"), (JobStatus.CANCELLED, "cancelled-early", "cancelled"),
    (JobStatus.CANCELLED, "", "cancelled"),
])
def test_the_outcome_follows_the_status_and_a_no_op_is_told_apart(status, returned, expected):
    assert outcome(record("enhance", status=status), returned) == expected
    assert Outcome(expected)  # one the ledger knows


def test_a_completed_job_reports_its_stages_pixels_and_compute_per_model():
    result = ObjectRef(key="t1/j1/tone.png", role="image", width=1280, height=960)
    mask = ObjectRef(key="t1/j1/tone.mask.png", role="mask", width=1280, height=960)
    job = record("enhance", status=JobStatus.COMPLETED, results=[result, mask], updated_at=ENDED_AT,
                 batch_id="b1", tier="pro")
    states = {"denoise": State.DONE, "upscale": State.DONE, "tone": State.DONE}
    outputs = {"denoise": computed(output(image("d.png")), "oidn", 0.5),
               "upscale": reused(computed(output(image("u.png")), "realesrgan", 9.0), [], ""),  # from the cache
               "tone": computed(output(result, mask), "tone", 0.25)}
    report = usage_report(job, states, outputs, "")
    assert (report.outcome, report.stages_run, report.stages_reused) == ("completed", 2, 1)
    assert dict(report.compute_s) == {"oidn": 0.5, "tone": 0.25}  # the reused stage computed nothing
    assert [(s.stage, s.model, s.reused, s.compute_s) for s in report.stages] == [
        ("denoise", "oidn", False, 0.5), ("tone", "tone", False, 0.25), ("upscale", "", True, 0.0)]
    assert report.megapixels_in == pytest.approx(PHOTO.width * PHOTO.height / 1e6)
    assert report.megapixels_out == pytest.approx(1.2288)  # the image only, not its mask
    usage = usage_of(report)
    assert (usage.tenant, usage.job_id, usage.batch_id, usage.tier, usage.operation) == ("t1", "j1", "b1", "pro",
                                                                                           "enhance")
    assert usage.finished_at == datetime.fromtimestamp(ENDED_AT, UTC)
    assert usage.compute_s == {"oidn": 0.5, "tone": 0.25}
    assert [(s.stage, s.reused) for s in usage.stages] == [("denoise", False), ("tone", False), ("upscale", True)]


def test_one_model_on_two_stages_sums_and_skipped_stages_count_for_nothing():
    plan = Plan.of(record("restore"))
    states, outputs = run(plan, worker({"stages": {**NOTHING_TO_RESTORE["stages"], "denoise": {"run": True}}}))
    for name in ("analyze", "denoise", "tone"):
        computed(outputs[name], "same-model", 1.5)
    job = record("restore", status=JobStatus.COMPLETED, results=[image("r.png")])
    report = usage_report(job, states, outputs, "")
    ran = [name for name, state in states.items() if state == State.DONE]
    assert report.stages_run == len(ran) == 3 and report.stages_reused == 0
    assert dict(report.compute_s) == {"same-model": 4.5}
    assert len(states) > report.stages_run  # the skipped ones


def test_a_failed_or_cancelled_job_reports_what_ran_and_no_result():
    failed = record("enhance", status=JobStatus.FAILED)
    report = usage_report(failed, {"denoise": State.DONE, "upscale": State.dispatched(3)},
                          {"denoise": computed(output(image("d.png")), "oidn", 0.5)}, "failed")
    assert (report.outcome, report.stages_run, report.megapixels_out) == ("failed", 2, 0.0)
    assert dict(report.compute_s) == {"oidn": 0.5}
    assert [(s.stage, s.model) for s in report.stages] == [("denoise", "oidn"), ("upscale", "")]  # it failed
    early = usage_report(record("enhance", status=JobStatus.CANCELLED), {"denoise": State.queued(1)}, {},
                         "cancelled-early")
    assert (early.outcome, early.stages_run, dict(early.compute_s)) == ("cancelled", 0, {})
    no_input = usage_report(record("text-to-image", status=JobStatus.FAILED), {}, {}, "failed")
    assert no_input.megapixels_in == 0.0


def test_a_report_the_ledger_cannot_take_is_refused():
    report = usage_report(record("enhance", status=JobStatus.COMPLETED, tier="gold"), {}, {}, "")
    with pytest.raises(ValueError):
        usage_of(report)


@pytest.mark.parametrize("reports", [True, False])
async def test_each_announced_end_is_reported_after_its_terminal_event_unless_reports_are_off(reports):
    broker, seen = KafkaBroker(), []

    @broker.subscriber(JOB_EVENTS)
    async def notifier(body: bytes) -> None:
        seen.append(("event", parse(JobEvent, body).WhichOneof("kind")))

    @broker.subscriber(USAGE_REPORTS)
    async def ledger(body: bytes) -> None:
        seen.append(("report", parse(UsageReport, body).outcome))

    redis = FakeAsyncRedis(server=FakeServer())
    jobs, stages = JobStore(redis, 3600), StageStore(redis, 3600)
    async with TestKafkaBroker(broker):
        endings = Endings(jobs, stages, BatchStore(redis, 3600), EventPublisher(broker), Quotas(redis), reports)
        await jobs.create("j1", "t1", "enhance", "{}", PHOTO, "token", "pro", "standard")
        await stages.set_state("j1", "denoise", State.dispatched(1))
        await endings.fail(await jobs.get("j1"), Fail("internal-error", "Triton restarting", "denoise"))
        await endings.announce(await jobs.get("j1"))  # a redelivered message: reported again, recorded once
    await redis.aclose()
    expected = [("event", "failed"), ("report", "failed")] if reports else [("event", "failed")]
    assert seen == expected * 2


async def test_the_ledger_consumer_refuses_a_report_no_retry_can_record():
    writer = LedgerWriter(Ledger(engine=None))  # refused before the database is reached
    with pytest.raises(Unprocessable, match="gold"):
        await writer.on_report(usage_report(record("enhance", status=JobStatus.FAILED, tier="gold"), {}, {}, ""))
