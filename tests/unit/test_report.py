"""A completed job's report (scheduler report.py, photocraft_common.report) and its writing by the endings,
with nothing running: what was measured, what each stage did and why, what could not be done."""

from __future__ import annotations

import json

from fakeredis import FakeAsyncRedis, FakeServer
from faststream.kafka import KafkaBroker, TestKafkaBroker

from photocraft_common.batches import BatchStore
from photocraft_common.contracts import ObjectRef, TaskOutput
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import JobStatus, JobStore
from photocraft_common.keyring import Keyring
from photocraft_common.quotas import Quotas
from photocraft_common.report import JobReport
from photocraft_common.storage import tenant_prefix
from photocraft_scheduler.endings import Endings
from photocraft_scheduler.plan import Plan, reused
from photocraft_scheduler.report import analyzers, findings, job_report, skipped_words
from photocraft_scheduler.stages import StageStore, State
from photocraft_scheduler.usage import megapixels

from .test_plan import PHOTO, image, output, record

# An analysis as agreed for issue 15, with a key no reader knows: it must pass through untouched.
ANALYSIS = {
    "defects": {"scratches": {"count": 3, "pixels": 412}, "dust": {"count": 1, "pixels": 9},
                "tears": {"count": 0, "pixels": 0}},
    "print": {"monochrome": True, "toned": "sepia", "faded": False, "cast": [2.0, 11.5]},
    "noise_sigma": 2.1, "blockiness": 0.05, "faces": 1, "a_new_measure": [1, 2, 3],
    "stages": {"descratch": {"run": True, "params": {}},
               "denoise": {"run": False, "params": {"strength": 0.1}},
               "dejpeg": {"run": False, "params": {"noise": 1}, "reason": "blockiness 0.05 is below 0.3"},
               "balance": {"run": True, "params": {"neutralise": 1, "levels": 0.5}},
               "faces": {"run": True, "params": {}}, "colorize": {"run": True, "params": {}}},
}


def ran(out: TaskOutput, model: str, info: dict | None = None) -> TaskOutput:
    out.model = model
    if info is not None:
        out.info_json = json.dumps(info)
    return out


def restored() -> tuple[Plan, dict[str, str], dict[str, TaskOutput]]:
    """A restore whose analysis found scratches and a sepia tone, on a platform without GFPGAN or colorization."""
    plan = Plan.of(record("restore"))
    outputs = {
        "analyze": ran(output(PHOTO, info=ANALYSIS), "analyze"),
        "descratch": ran(output(image("d.png"), image("d.mask.png", role="mask")), "inpaint",
                         {"scratches": {"count": 3, "pixels": 400}, "pixels": 409, "warnings": ["w"]}),
        "denoise": output(image("d.png")), "dejpeg": output(image("d.png")),
        "balance": ran(output(image("b.png")), "tone", {"neutralised": True}),
        "faces": ran(output(image("f.png"), warnings=("model gfpgan is not installed; ran retouch instead",)),
                     "retouch", {"faces": 1}),
        "colorize": output(image("f.png"), warnings=(
            "model colorize_eccv16 is not installed; the photo stays black-and-white",)),
        "tone": ran(output(image("t.png")), "tone"),
    }
    states = {name: State.DONE for name in outputs} | {n: State.SKIPPED for n in ("denoise", "dejpeg", "colorize")}
    return plan, states, outputs


def test_the_report_passes_the_analysis_on_and_says_what_it_found():
    plan, states, outputs = restored()
    report = job_report(record("restore"), plan, states, outputs, ["faces: …"])
    assert report.analysis == ANALYSIS  # every key, known or not
    assert report.findings == [
        "defects: 3 scratches (412 px), 1 dust speck (9 px)",
        "a sepia-toned monochrome print; colour cast a* +2.0, b* +11.5 (CIELAB)",
        "noise: sigma 2.1 gray levels (0-255)", "JPEG blocking: 0.05 (about 0 without it; over 0.3 is visible)",
        "1 face found"]
    assert report.params == {"upscale": 1, "faces": True, "colorize": True, "toning": "remove",
                             "output": {"format": "png", "quality": 92}}
    assert report.warnings == ["faces: …"]


def test_each_stage_says_what_it_did_and_why():
    plan, states, outputs = restored()
    stages = {s.stage: s for s in job_report(record("restore"), plan, states, outputs, []).stages}
    assert [s.stage for s in job_report(record("restore"), plan, states, outputs, []).stages] == [
        s.name for s in plan.stages]
    assert stages["analyze"].status == "ran" and stages["analyze"].info == {}  # its output is the report's analysis
    descratch = stages["descratch"]
    assert (descratch.status, descratch.model, descratch.reason) == (
        "ran", "inpaint", "the analysis found scratches, dust or tears")
    assert descratch.info == {"scratches": {"count": 3, "pixels": 400}, "pixels": 409}  # warnings listed apart
    assert stages["denoise"].status == "skipped" and stages["denoise"].model == "" and not stages["denoise"].params
    assert stages["denoise"].reason == "the analysis found too little noise to remove"
    assert stages["dejpeg"].reason == "blockiness 0.05 is below 0.3"  # the analysis's own reason wins
    assert stages["balance"].params == {"contrast": 0.0, "saturation": 0.0, "sharpen": 0.0, "neutralise": 1,
                                        "levels": 0.5}  # the recipe's, with what the analysis added
    assert stages["balance"].info == {"neutralised": True}
    assert stages["faces"].model == "retouch"
    assert stages["faces"].reason == "the analysis found faces; model gfpgan is not installed; ran retouch instead"
    assert (stages["colorize"].status, stages["colorize"].reason) == (
        "skipped", "model colorize_eccv16 is not installed; the photo stays black-and-white")
    # outcomes.py's judgement: every strength at 0 on the tone model leaves the photo as it was
    assert stages["tone"].reason == "the analysis does not decide it, so it runs; it left the photo as it was"
    assert stages["descratch"].changed and not stages["tone"].changed and not stages["analyze"].changed
    assert not any(s.changed for s in stages.values() if s.status == "skipped")


def test_what_could_not_be_done_names_the_missing_models_and_what_ran_instead():
    plan, states, outputs = restored()
    missing = job_report(record("restore"), plan, states, outputs, []).not_installed
    assert [(m.stage, m.model, m.instead) for m in missing] == [("faces", "gfpgan", "retouch"),
                                                                 ("colorize", "colorize_eccv16", "")]
    assert missing[1].effect == "model colorize_eccv16 is not installed; the photo stays black-and-white"


def test_a_stage_skipped_by_its_analysis_lacks_nothing_even_without_its_model():
    plan, states, outputs = restored()
    analysis = {**ANALYSIS, "print": {"monochrome": False, "toned": "none"},
                "stages": {**ANALYSIS["stages"], "colorize": {"run": False}}}
    outputs["analyze"] = ran(output(PHOTO, info=analysis), "analyze")
    outputs["colorize"] = output(image("f.png"))
    report = job_report(record("restore"), plan, states, outputs, [])
    assert [m.stage for m in report.not_installed] == ["faces"]
    assert report.stages[6].reason == "the analysis found a colour photo"


def test_a_kept_tone_is_why_a_monochrome_print_is_not_colorized_nor_balanced():
    kept = "the print's tone is kept (toning: keep), so it is not colorized"
    assert skipped_words({"print": {"monochrome": True, "toned": "sepia"}}, "keep")["colorize"] == kept
    assert skipped_words({"grayscale": True}, "keep")["colorize"] == kept  # the older analysis
    assert skipped_words({"print": {"monochrome": False}}, "keep")["colorize"] == "the analysis found a colour photo"
    assert skipped_words({"print": {"monochrome": True}}, "remove")["colorize"] == "the analysis did not ask for it"
    assert skipped_words({"print": {"monochrome": True, "toned": "sepia"}}, "keep")["balance"].startswith(
        "the print's tone is kept")
    assert skipped_words({"print": {"monochrome": True, "toned": "sepia"}}, "remove")["balance"] == \
        "the analysis found no fading, colour cast or toning to correct"
    plan, states, outputs = restored()
    outputs["analyze"] = ran(output(PHOTO, info={**ANALYSIS, "stages": {"colorize": {"run": False}}}), "analyze")
    outputs["colorize"] = output(image("f.png"))
    report = job_report(record("restore", {"toning": "keep"}), Plan.of(record("restore", {"toning": "keep"})),
                        states, outputs, [])
    assert report.stages[6].reason == kept and report.params["toning"] == "keep"


def test_a_reused_stage_says_so_and_names_its_model():
    plan, states, outputs = restored()
    cached = output(image("cache/inpaint/x.png"), info={"pixels": 409})
    outputs["descratch"] = reused(cached, [PHOTO], "", "inpaint")
    line = job_report(record("restore"), plan, states, outputs, []).stages[1]
    assert (line.status, line.model, line.info) == ("reused", "inpaint", {"pixels": 409})


def test_an_older_analysis_still_gives_findings():
    assert findings({"grayscale": True, "scratches": 0.0125, "faces": 0}) == [
        "scratches on 1.25 % of the photo", "a black-and-white photo", "no faces found"]
    assert findings({"defects": {"scratches": {"count": 0, "pixels": 0}}, "print": {"monochrome": False,
                     "toned": "none", "faded": True, "cast": [0.2, 0.1]}}) == [
        "no scratches, dust or tears found", "a colour photo, faded"]
    assert findings({"stages": {}}) == []


def test_the_report_is_versioned_json_that_reads_back():
    plan, states, outputs = restored()
    stored = job_report(record("restore"), plan, states, outputs, []).to_json()
    assert json.loads(stored)["schema"] == 1 and next(iter(json.loads(stored))) == "schema"
    assert JobReport.model_validate_json(stored) == job_report(record("restore"), plan, states, outputs, [])


def test_only_recipes_with_an_analysis_get_a_report():
    assert analyzers(Plan.of(record("restore"))) == ["analyze"]
    assert analyzers(Plan.of(record("enhance"))) == analyzers(Plan.of(record("retouch"))) == []


def test_a_report_counts_no_megapixels():
    assert megapixels([ObjectRef(role="report", width=100, height=100), image("x.png")]) == 0.0


class Bucket:
    """An in-process stand-in for the ObjectStore's put (the platform test uses SeaweedFS)."""

    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str, float | None]] = {}

    async def put(self, key: str, data: bytes, content_type: str, width: int = 0, height: int = 0,
                  expires_at: float | None = None) -> ObjectRef:
        self.objects[key] = (data, content_type, expires_at)
        return ObjectRef(bucket="photocraft", key=key, content_type=content_type, size_bytes=len(data))


async def test_a_completed_restore_has_its_report_among_its_results_and_an_enhance_has_none():
    keyring = Keyring.generate()
    redis, bucket = FakeAsyncRedis(server=FakeServer()), Bucket()
    jobs, stages = JobStore(redis, 3600), StageStore(redis, 3600)
    plan, states, outputs = restored()
    async with TestKafkaBroker(KafkaBroker()) as broker:
        endings = Endings(jobs, stages, BatchStore(redis, 3600), EventPublisher(broker), Quotas(redis), False,
                          bucket, keyring)
        await jobs.create("j1", "t1", "restore", "{}", PHOTO, "token", "pro", "heavy")
        for name, out in outputs.items():
            await stages.record_output("j1", name, out)
            await stages.set_state("j1", name, states[name])
        await endings.complete(await jobs.get("j1"), plan)
        await jobs.create("j2", "t1", "enhance", json.dumps({"scale": 1, "denoise": 0}), PHOTO, "t", "pro", "fast")
        await stages.record_output("j2", "tone", ran(output(image("e.png")), "tone"))
        await stages.set_state("j2", "tone", State.DONE)
        await endings.complete(await jobs.get("j2"), Plan.of(await jobs.get("j2")))
        done, enhanced = await jobs.get("j1"), await jobs.get("j2")
    await redis.aclose()
    assert done.status is JobStatus.COMPLETED and [r.role for r in done.results] == ["image", "report"]
    key = f"{tenant_prefix(keyring, 't1')}/j1/stages/report.json"
    assert done.results[1].key == key and done.results[1].content_type == "application/json"
    data, content_type, expires_at = bucket.objects[key]
    assert expires_at == done.expires_at > 0  # purged with the job's other objects
    report = JobReport.model_validate_json(data)
    assert report.job_id == "j1" and report.warnings == list(done.warnings) and report.analysis == ANALYSIS
    assert [r.role for r in enhanced.results] == ["image"] and len(bucket.objects) == 1


async def test_an_unreadable_analysis_completes_the_job_without_a_report_and_says_so():
    redis, bucket = FakeAsyncRedis(server=FakeServer()), Bucket()
    jobs, stages = JobStore(redis, 3600), StageStore(redis, 3600)
    plan, states, outputs = restored()
    outputs["analyze"] = ran(output(PHOTO, info={**ANALYSIS, "noise_sigma": "high"}), "analyze")
    async with TestKafkaBroker(KafkaBroker()) as broker:
        endings = Endings(jobs, stages, BatchStore(redis, 3600), EventPublisher(broker), Quotas(redis), False,
                          bucket, Keyring.generate())
        await jobs.create("j1", "t1", "restore", "{}", PHOTO, "token", "pro", "heavy")
        for name, out in outputs.items():
            await stages.record_output("j1", name, out)
            await stages.set_state("j1", name, states[name])
        await endings.complete(await jobs.get("j1"), plan)
        done = await jobs.get("j1")
    await redis.aclose()
    assert done.status is JobStatus.COMPLETED and [r.role for r in done.results] == ["image"] and not bucket.objects
    assert done.warnings[-1].startswith("report: not made, the analysis could not be read (ValueError(")
