"""The scheduler's job graph and retry decisions (plan.py, retries.py, stages.State), with nothing running."""

from __future__ import annotations

import json
import random

import pytest

from photocraft_common.contracts import Cancelled, Completed, Failed, ObjectRef, TaskOutput, now
from photocraft_common.jobs import JobRecord, JobStatus
from photocraft_common.keyring import Keyring
from photocraft_common.operations import OPERATIONS, UnknownOperation
from photocraft_common.storage import tenant_prefix
from photocraft_scheduler.plan import (
    Complete,
    Dispatch,
    Fail,
    Plan,
    Skip,
    announcement,
    decision,
    image_of,
    passed_on,
    work_cost,
)
from photocraft_scheduler.retries import Retry, RetryPolicy
from photocraft_scheduler.stages import State

EVERY_MODEL = {"analyze", "colorize_eccv16", "gfpgan", "inpaint", "oidn", "realesrgan_x4plus", "retouch",
               "sd_turbo", "selfie", "tone", "u2netp", "waifu2x_dejpeg", "waifu2x_photo"}
PHOTO = ObjectRef(bucket="photocraft", key="t1/j1/input/photo.png", role="image", content_id="c-input",
                  width=640, height=480)


def record(operation: str, params: dict | None = None, **fields) -> JobRecord:
    with_input = OPERATIONS[operation].takes_input if operation in OPERATIONS else True
    return JobRecord(**{"job_id": "j1", "tenant_id": "t1", "operation": operation, "status": JobStatus.RUNNING,
                        "params_json": json.dumps(params or {}), "input": PHOTO if with_input else None,
                        "created_at": 0.0, "updated_at": 0.0, **fields})


def image(key: str, role: str = "image") -> ObjectRef:
    return ObjectRef(bucket="photocraft", key=key, role=role, content_id=f"c-{key}")


def output(*objects: ObjectRef, info: dict | None = None, warnings: tuple[str, ...] = ()) -> TaskOutput:
    return TaskOutput(objects=objects, info_json=json.dumps(info) if info else "", warnings=warnings)


# ---- the plan of each operation ----------------------------------------------------------------

@pytest.mark.parametrize(("operation", "params", "stages", "final"), [
    ("enhance", {}, ["denoise", "upscale", "tone"], {"tone"}),
    ("enhance", {"scale": 1, "denoise": 0}, ["tone"], {"tone"}),
    ("enhance", {"scale": 4, "upscaler": "faithful"}, ["denoise", "upscale", "upscale-2", "tone"], {"tone"}),
    ("remove-background", {"subject": "person"}, ["segment"], {"segment"}),
    ("retouch", {}, ["retouch"], {"retouch"}),
    ("restore", {}, ["analyze", "descratch", "denoise", "dejpeg", "balance", "faces", "colorize", "tone"],
     {"tone"}),
    ("restore", {"upscale": 2, "faces": False, "colorize": False},
     ["analyze", "descratch", "denoise", "dejpeg", "balance", "upscale", "tone"], {"tone"}),
    ("colorize", {}, ["colorize"], {"colorize"}),
    ("text-to-image", {"prompt": "a lighthouse", "seed": 3}, ["generate"], {"generate"}),
])
def test_each_operation_plans_its_stages_and_final_stages(operation, params, stages, final):
    plan = Plan.of(record(operation, params))
    assert [s.name for s in plan.stages] == stages
    assert plan.final == final
    assert plan.job_input == (None if operation == "text-to-image" else PHOTO)
    assert [s.name for s in plan.ready({})] == stages[:1]


def test_an_unknown_operation_has_no_plan():
    with pytest.raises(UnknownOperation, match="paint-a-moustache"):
        Plan.of(record("paint-a-moustache"))


def test_a_stage_is_ready_once_every_stage_it_needs_is_done_or_skipped():
    plan = Plan.of(record("enhance"))
    assert plan.ready({"denoise": State.queued(1)}) == []
    assert plan.ready({"denoise": State.dispatched(2)}) == []
    assert [s.name for s in plan.ready({"denoise": State.SKIPPED})] == ["upscale"]
    states = {"denoise": State.DONE, "upscale": State.DONE}
    assert [s.name for s in plan.ready(states)] == ["tone"]
    assert not plan.is_complete(states)
    assert plan.is_complete({**states, "tone": State.DONE})
    assert plan.is_complete({**states, "tone": State.SKIPPED})
    assert not plan.is_complete({**states, "tone": State.dispatched(1)})


def test_stage_states_tell_a_current_result_from_a_stale_one():
    assert State.is_current("dispatched:2", 2) and State.is_current("queued:1", 1)
    assert not State.is_current("dispatched:2", 1)
    assert not State.is_current("queued:12", 2)
    assert not State.is_current(State.DONE, 1) and not State.is_current(None, 1)


# ---- dispatches: model, parameters, inputs, format, progress -------------------------------------

def test_dispatches_carry_parameters_inputs_format_and_progress_by_weight():
    # enhance x2: denoise (weight 1), upscale (3), tone (1): 5 in all.
    plan = Plan.of(record("enhance", {"denoise": 0.25, "output": {"format": "jpeg", "quality": 80}}))
    first = plan.decide(plan.stage("denoise"), {}, {}, EVERY_MODEL)
    assert first == Dispatch("denoise", "oidn", {"strength": 0.25}, [PHOTO], "png", 0.0, 20.0)

    denoised = {"denoise": output(image("t1/j1/denoise.png"))}
    states = {"denoise": State.DONE}
    second = plan.decide(plan.stage("upscale"), states, denoised, EVERY_MODEL)
    assert second == Dispatch("upscale", "waifu2x_photo", {"noise": -1}, [image("t1/j1/denoise.png")], "png",
                              20.0, 80.0)

    states["upscale"] = State.DONE
    last = plan.decide(plan.stage("tone"), states, {**denoised, "upscale": output(image("t1/j1/upscale.png"))},
                       EVERY_MODEL)
    assert last.model == "tone" and last.extension == "jpg"  # the final stage writes the requested format
    assert last.params == {"contrast": 0.4, "saturation": 0.1, "sharpen": 0.3, "quality": 80}
    assert (last.progress_from, last.progress_to) == (80.0, 100.0)
    assert last.inputs == [image("t1/j1/upscale.png")]


def test_a_dispatch_becomes_the_task_message():
    plan = Plan.of(record("remove-background", {"output": {"format": "webp", "quality": 70}}))
    dispatch = plan.decide(plan.stage("segment"), {}, {}, EVERY_MODEL)
    stamp = now()
    task = dispatch.task(record("remove-background"), attempt=2, dispatched_at=stamp)
    assert task.task_id == "j1/segment/2" and task.job_id == "j1" and task.tenant_id == "t1"
    assert (task.stage, task.model, task.attempt, task.output_format) == ("segment", "u2netp", 2, "webp")
    assert json.loads(task.params_json) == {"background": {"type": "transparent"}, "refine": True, "quality": 70}
    assert list(task.inputs) == [PHOTO] and task.dispatched_at == stamp
    assert (task.progress_from, task.progress_to) == (0.0, 100.0)


def test_the_first_installed_model_serves_a_stage():
    plan = Plan.of(record("restore"))
    states = {"analyze": State.DONE, "balance": State.DONE}
    outputs = {"analyze": output(PHOTO, info={"stages": {}}), "balance": output(image("t1/j1/balance.png"))}
    faces = plan.stage("faces")
    assert plan.decide(faces, states, outputs, EVERY_MODEL).model == "gfpgan"
    assert plan.decide(faces, states, outputs, EVERY_MODEL - {"gfpgan"}).model == "retouch"


def test_a_required_stage_without_a_model_fails_the_job():
    plan = Plan.of(record("enhance"))
    assert plan.decide(plan.stage("denoise"), {}, {}, EVERY_MODEL - {"oidn"}) == Fail(
        "model-unavailable", "model oidn is not installed", "denoise")


def test_an_optional_stage_without_a_model_is_skipped_with_a_warning():
    plan = Plan.of(record("restore"))
    outputs = {"analyze": output(info={"stages": {}}), "faces": output(image("t1/j1/faces.png"))}
    skip = plan.decide(plan.stage("colorize"), {"faces": State.DONE}, outputs, EVERY_MODEL - {"colorize_eccv16"})
    said = "model colorize_eccv16 is not installed; the photo stays black-and-white"
    assert skip == Skip("colorize", said, [image("t1/j1/faces.png")])
    assert list(skip.output.objects) == [image("t1/j1/faces.png")]  # its input passes on
    assert list(skip.output.warnings) == [said]


def test_the_analysis_decides_which_stages_run_and_with_what():
    plan = Plan.of(record("restore"))
    analyze = plan.decide(plan.stage("analyze"), {}, {}, EVERY_MODEL)
    assert (analyze.model, analyze.extension, analyze.params, analyze.inputs) == (
        "analyze", "json", {"toning": "remove"}, [PHOTO])
    verdicts = {"stages": {"descratch": {"run": False}, "denoise": {"run": True, "params": {"strength": 0.7}}}}
    # An analysis makes no image: what it records passes the job's input on.
    analysis = plan.output_of("analyze", output(info=verdicts), {})
    assert list(analysis.objects) == [PHOTO]
    outputs, states = {"analyze": analysis}, {"analyze": State.DONE}

    skipped = plan.decide(plan.stage("descratch"), states, outputs, EVERY_MODEL)
    assert skipped == Skip("descratch", "", [PHOTO]) and list(skipped.output.warnings) == []
    outputs["descratch"], states["descratch"] = skipped.output, State.SKIPPED
    denoise = plan.decide(plan.stage("denoise"), states, outputs, EVERY_MODEL)
    assert (denoise.model, denoise.params, denoise.inputs) == ("oidn", {"strength": 0.7}, [PHOTO])
    # weights: analyze 0.5, descratch 1, denoise 1, dejpeg 2, balance 1, faces 1, colorize 2, tone 1 = 9.5
    assert denoise.progress_from == pytest.approx(100 * 1.5 / 9.5)
    assert denoise.progress_to == pytest.approx(100 * 2.5 / 9.5)
    assert decision(plan.stage("dejpeg"), outputs) == (True, {})  # one the analysis does not name runs
    with pytest.raises(KeyError):
        decision(plan.stage("tone"), {})  # no analysis yet


def test_a_retried_stage_waits_for_its_preferred_model_rather_than_failing():
    plan = Plan.of(record("enhance"))
    again = plan.redispatch("denoise", {"denoise": State.dispatched(1)}, {}, set())
    assert (again.stage, again.model, again.inputs, again.progress_from) == ("denoise", "oidn", [PHOTO], 0.0)
    with pytest.raises(KeyError):
        plan.redispatch("colorize", {}, {}, EVERY_MODEL)


def test_reuse_keys_need_every_input_content_id():
    plan = Plan.of(record("retouch"))
    dispatch = plan.decide(plan.stage("retouch"), {}, {}, EVERY_MODEL)
    keyring = Keyring.generate()
    key = dispatch.reuse_key(keyring, "t1", "w1")
    assert key.startswith(f"{tenant_prefix(keyring, 't1')}/cache/retouch/") and key.endswith(".png")
    assert dispatch.reuse_key(keyring, "t1", "w2") != key  # other weights, another result
    anonymous_input = Dispatch(**{**dispatch.__dict__, "inputs": [ObjectRef(key="x", role="image")]})
    assert anonymous_input.reuse_key(keyring, "t1", "w1") is None


# ---- outputs and completion -----------------------------------------------------------------------

def test_an_output_without_an_image_passes_its_inputs_on():
    mask_only = output(image("m.png", role="mask"))
    passed = passed_on(mask_only, [PHOTO])
    assert list(passed.objects) == [image("m.png", role="mask"), PHOTO] and image_of(passed) == PHOTO
    assert len(mask_only.objects) == 1  # the original is left alone
    with_image = output(image("cut.png"), image("m.png", role="mask"))
    assert passed_on(with_image, [PHOTO]) == with_image


def test_completion_gathers_the_final_results_and_every_warning():
    plan = Plan.of(record("restore"))
    outputs = {name: output(image(f"{name}.png")) for name in [s.name for s in plan.stages]}
    outputs["faces"] = output(image("faces.png"), warnings=("no face found; the image is unchanged",))
    outputs["colorize"] = output(image("faces.png"),
                                 warnings=("model colorize_eccv16 is not installed; the photo stays black-and-white",))
    outputs["tone"] = output(image("tone.png"), image("tone-mask.png", role="mask"))
    assert plan.completion(outputs) == Complete(
        [image("tone.png"), image("tone-mask.png", role="mask")],
        ["faces: no face found; the image is unchanged",
         "colorize: model colorize_eccv16 is not installed; the photo stays black-and-white"])


def test_a_finished_job_announces_its_end():
    assert announcement(record("retouch", status=JobStatus.RUNNING)) == {}
    done = announcement(record("retouch", status=JobStatus.COMPLETED, results=[PHOTO], warnings=["w"]))
    assert done == {"completed": Completed(results=[PHOTO], warnings=["w"])}
    failed = announcement(record("retouch", status=JobStatus.FAILED, error_code="model-unavailable",
                                 error_message="gone", error_stage="retouch"))
    assert failed == {"failed": Failed(code="model-unavailable", message="gone", stage="retouch")}
    assert announcement(record("retouch", status=JobStatus.CANCELLED)) == {
        "cancelled": Cancelled(reason="cancelled by the client")}
    assert announcement(record("retouch", status=JobStatus.CANCELLED, error_message="too slow")) == {
        "cancelled": Cancelled(reason="too slow")}


def test_work_cost_is_the_lane_cost_and_a_batch_photo_costs_what_it_would_alone():
    assert work_cost(record("retouch", lane="fast")) == 1
    assert work_cost(record("enhance", lane="standard")) == 2
    assert work_cost(record("restore", lane="heavy")) == 4
    assert work_cost(record("retouch", lane="heavy", batch_id="b1")) == 1
    big = PHOTO.__class__(width=5000, height=3000, role="image")  # 15 MP: one lane up
    assert work_cost(record("retouch", lane="heavy", batch_id="b1", input=big)) == 2
    assert work_cost(record("enhance", {"scale": 4}, lane="heavy", batch_id="b1")) == 4


# ---- retries --------------------------------------------------------------------------------------

def test_retries_back_off_exponentially_with_injected_jitter():
    policy = RetryPolicy(max_attempts=5, base_s=2.0, max_s=10.0)
    drawn = []

    def lowest(a: float, b: float) -> float:
        drawn.append((a, b))
        return a

    assert policy.after_failure("upscale", 1, "s3", "NoSuchKey", True, uniform=lowest) == Retry(
        "upscale", 2, 1.0, "s3: NoSuchKey")
    assert drawn == [(0.5, 1.0)]
    highest = lambda a, b: b  # noqa: E731
    assert [policy.after_failure("upscale", n, "s3", "x", True, uniform=highest).delay_s for n in (1, 2, 3, 4)] \
        == [2.0, 4.0, 8.0, 10.0]  # doubling, capped at max_s
    seeded = policy.after_failure("upscale", 2, "s3", "x", True, uniform=random.Random(7).uniform)
    assert seeded.delay_s == 4.0 * random.Random(7).uniform(0.5, 1.0) and 2.0 <= seeded.delay_s <= 4.0


def test_retries_give_up_after_max_attempts_or_on_a_final_error():
    policy = RetryPolicy(max_attempts=3)
    assert isinstance(policy.after_failure("tone", 2, "timeout", "slow", True), Retry)
    assert policy.after_failure("tone", 3, "timeout", "slow", True) == Fail("timeout", "slow", "tone")
    assert policy.after_failure("tone", 1, "invalid-image", "not a PNG", False) == Fail(
        "invalid-image", "not a PNG", "tone")
