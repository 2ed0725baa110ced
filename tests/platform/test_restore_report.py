"""restore's report on the running platform: an old print made by the test (the astronaut's face, grayed, sepia-
toned, scratched and dusty) comes back with a JSON report among its results that names what the analysis found,
says what each stage did or why it was skipped, matches the job's events, and names the models missing here."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import httpx
import numpy as np
from PIL import Image
from playwright.async_api import expect
from skimage import data

from photocraft_common.expiry import ExpiryIndex, object_entry
from photocraft_common.report import JobReport

from .helpers import GATEWAY, absent, fresh, job_events, png_bytes
from .test_web_page import SCREENSHOTS, errors, page  # noqa: F401 (fixtures: a headless Chromium page)

FACE = np.ascontiguousarray(data.astronaut()[40:296, 128:384])  # the astronaut's face, 256 x 256
RESTORE = ["analyze", "descratch", "denoise", "dejpeg", "balance", "faces", "colorize", "tone"]
SEPIA = np.array([1.07, 0.74, 0.43])  # a warm brown: gray level x these, per RGB channel
NO_GFPGAN = "faces: model gfpgan is not installed; ran retouch instead"
NO_COLORIZE = "colorize: model colorize_eccv16 is not installed; the photo stays black-and-white"


def old_print(seed: int = 15) -> np.ndarray:
    """The face as an old sepia print: gray, toned brown, with six light and dark scratches and thirty dust specks."""
    rng = np.random.default_rng(seed)
    gray = cv2.cvtColor(FACE, cv2.COLOR_RGB2GRAY).astype(np.float64)
    toned = np.clip(gray[..., None] * SEPIA + 12, 0, 255).astype(np.uint8)
    for _ in range(6):
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, 256, 4))
        level = int(rng.choice([25, 235]))
        cv2.line(toned, (x0, y0), (x1, y1), (level, level, level), int(rng.integers(1, 4)))
    for x, y in rng.integers(4, 252, (30, 2)):
        cv2.circle(toned, (int(x), int(y)), int(rng.integers(1, 4)), (235, 230, 220), -1)
    return fresh(toned)


def report_of(events: list[dict]) -> tuple[dict, JobReport]:
    """The completed event's report result and the report it points to, read as the web page reads it."""
    assert events[-1]["type"] == "completed", events[-1]
    reports = [r for r in events[-1]["results"] if r["role"] == "report"]
    assert len(reports) == 1, events[-1]["results"]
    assert reports[0]["content_type"] == "application/json"
    body = httpx.get(reports[0]["url"], timeout=30).raise_for_status().content
    return reports[0], JobReport.model_validate_json(body)


async def test_a_restore_reports_what_each_stage_did_and_why(gateway, redis, settings):
    async with absent("gfpgan"), absent("colorize_eccv16"):
        events = await job_events(gateway, "restore", {}, png_bytes(old_print()))
    result, report = report_of(events)
    job_id = events[-1]["job_id"]
    assert (report.schema_version, report.job_id, report.operation) == (1, job_id, "restore")
    assert report.params["toning"] == "remove"

    # The same result in the job's view, stored under the job's key and purged with its other objects.
    view = (await gateway.get(f"/v1/jobs/{job_id}")).json()
    assert [r["role"] for r in view["results"]] == ["image", "report"]
    key = unquote(urlparse(result["url"]).path).split(f"/{settings.s3.bucket}/", 1)[1]
    assert key.endswith(f"/{job_id}/stages/report.json")
    index = ExpiryIndex(redis, settings.job_ttl_s)
    assert await index.dues([object_entry(settings.s3.bucket, key)]) == [await index.job_deadline(job_id)]

    # Every stage of the recipe, in order; those done are those the events completed, and each says why.
    assert [s.stage for s in report.stages] == RESTORE
    completed = [e["stage"] for e in events if e["type"] == "stage_completed"]
    assert [s.stage for s in report.stages if s.status in ("ran", "reused")] == completed
    started = {e["stage"] for e in events if e["type"] == "started"}
    assert started <= {s.stage for s in report.stages if s.status == "ran"}
    for stage in report.stages:
        assert stage.reason, stage
        assert bool(stage.model) == (stage.status in ("ran", "reused")), stage
    assert {s.stage: s.status for s in report.stages}["analyze"] in ("ran", "reused")
    assert report.analysis is not None and "stages" in report.analysis and report.findings
    analysis, lacking = report.analysis["stages"], [m.stage for m in report.not_installed]
    for stage in report.stages:
        if stage.stage in analysis and not analysis[stage.stage].get("run"):  # its analysis said no: nothing lacked
            assert stage.status == "skipped" and stage.stage not in lacking, stage

    # The face was found; without GFPGAN the light retouch ran, and the report and the warnings say so.
    faces = {s.stage: s for s in report.stages}["faces"]
    assert (faces.status, faces.model) == ("ran", "retouch"), faces
    assert NO_GFPGAN in events[-1]["warnings"] and NO_GFPGAN in report.warnings
    assert ("faces", "gfpgan", "retouch") in [(m.stage, m.model, m.instead) for m in report.not_installed]
    assert report.warnings == events[-1]["warnings"] == view["warnings"]


async def test_the_report_names_the_defects_and_the_tone_of_an_old_print(gateway):
    """Needs the issue-15 analysis (defects, print tone) in the running Triton."""
    async with absent("colorize_eccv16"):
        events = await job_events(gateway, "restore", {}, png_bytes(old_print(seed=16)))
    _, report = report_of(events)
    defects, paper = report.analysis["defects"], report.analysis["print"]
    assert defects["scratches"]["count"] >= 1 and defects["dust"]["count"] >= 1, defects
    assert (paper["monochrome"], paper["toned"]) == (True, "sepia"), paper
    assert any("scratch" in line for line in report.findings) and any("sepia" in line for line in report.findings)
    stages = {s.stage: s for s in report.stages}
    assert stages["descratch"].status == "ran" and stages["descratch"].info, stages["descratch"]
    assert stages["balance"].status == "ran", stages["balance"]
    # A monochrome print with its tone removed is to be colorized: colorization is not installed here.
    assert stages["colorize"].status == "skipped" and NO_COLORIZE in events[-1]["warnings"]
    assert ("colorize", "colorize_eccv16", "") in [(m.stage, m.model, m.instead) for m in report.not_installed]


async def test_a_kept_tone_is_not_colorized_and_the_report_says_why(gateway):
    """Needs the issue-15 analysis (toning) in the running Triton."""
    async with absent("colorize_eccv16"):
        events = await job_events(gateway, "restore", {"toning": "keep"}, png_bytes(old_print(seed=17)))
    _, report = report_of(events)
    assert report.analysis["print"]["monochrome"] is True, report.analysis
    colorize = {s.stage: s for s in report.stages}["colorize"]
    assert colorize.status == "skipped" and "tone is kept" in colorize.reason, colorize
    assert NO_COLORIZE not in events[-1]["warnings"] and "colorize" not in [m.stage for m in report.not_installed]


async def test_an_enhance_has_no_report(gateway):
    events = await job_events(gateway, "enhance", {"scale": 1}, png_bytes(fresh(FACE[::4, ::4])))
    assert events[-1]["type"] == "completed", events[-1]
    assert [r["role"] for r in events[-1]["results"]] == ["image"]


async def test_the_web_page_shows_the_report_beside_the_photo(page, errors, api_key, tmp_path: Path):  # noqa: F811
    photo = tmp_path / "old-print.png"
    Image.fromarray(old_print(seed=18)).save(photo)
    await page.goto(f"{GATEWAY}/")
    await page.fill("#api-key", api_key)
    await page.select_option("#operation", "restore")
    await page.set_input_files("#files", photo)
    async with absent("gfpgan"):
        await page.click("#submit")
        job = page.locator(".job").first
        await expect(job).to_have_attribute("data-status", "completed", timeout=240_000)
    report = job.locator(".report")
    await expect(report).to_be_visible()
    await expect(report.locator(".stages li")).to_have_count(len(RESTORE))
    await expect(report.locator(".stages li").first).to_contain_text("analyze ran on analyze")
    assert await report.locator(".findings li").count() >= 3
    await expect(report.locator(".missing")).to_contain_text("faces: model gfpgan is not installed; ran retouch")
    await expect(job.locator("a.extra")).to_contain_text("Download report")
    side_by_side = await job.evaluate("""el => {
        const [photo, text] = [el.querySelector('.compare'), el.querySelector('.report')].map(
            e => e.getBoundingClientRect());
        return text.left >= photo.right - 1 && text.top < photo.bottom; }""")
    assert side_by_side, "the report is beside the before/after view"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await job.screenshot(path=SCREENSHOTS / "web-restore-report.png")
    assert errors == []
