"""The gateway's web page in a real browser: Debian's Chromium, headless, driven by Playwright.

A photo goes through the page to the running platform and back: upload, live
progress over the job's WebSocket, the result shown beside the original; the
API key's usage this month, from the ledger.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from PIL import Image
from playwright.async_api import async_playwright, expect
from skimage import data as samples

from photocraft_common.accounts import Accounts
from photocraft_common.database import make_engine
from photocraft_common.tables import usage_records
from photocraft_common.tiers import Tier
from photocraft_common.usage.ledger import Ledger, Usage

from .helpers import GATEWAY, ROOT, fresh

CHROMIUM = "/usr/bin/chromium"  # Debian's (make deps); Playwright's own download does not work here
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = ROOT / "out" / "screenshots"
SMALL = samples.astronaut()[::8, ::8]  # 64 x 64: quick jobs


def png_file(folder: Path, name: str, pixels) -> Path:
    path = folder / name
    Image.fromarray(fresh(pixels)).save(path)
    return path


async def completed_image(job) -> list[int]:
    """Wait for a job's card to complete; the size of its result image, as loaded by the browser."""
    await expect(job).to_have_attribute("data-status", "completed", timeout=120_000)
    result = job.locator("img.result")
    await result.evaluate("img => img.decode()")  # rejects if the result cannot be loaded
    return await result.evaluate("img => [img.naturalWidth, img.naturalHeight]")


@pytest.fixture
def errors() -> list[str]:
    """The page's console errors and uncaught exceptions."""
    return []


@pytest.fixture
async def page(errors):
    """A fresh page in a new headless Chromium."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make deps` installs Debian's chromium", pytrace=False)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = await browser.new_page(viewport={"width": 1000, "height": 1400})
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page
        await browser.close()


async def test_page_loads_without_errors(page, errors):
    await page.goto(f"{GATEWAY}/")
    await expect(page.get_by_label("Operation")).to_be_visible()
    options = await page.locator("#operation option").evaluate_all("os => os.map(o => o.value)")
    assert options == ["remove-background", "enhance", "retouch", "restore", "colorize", "text-to-image"]
    await page.select_option("#operation", "text-to-image")
    await expect(page.get_by_label("Prompt")).to_be_visible()
    await expect(page.locator("#drop-zone")).to_be_hidden()
    assert errors == []


async def test_remove_background_through_the_page(page, errors, api_key, astronaut, tmp_path):
    await page.goto(f"{GATEWAY}/")
    await page.fill("#api-key", api_key)
    await page.select_option("#operation", "remove-background")
    await page.set_input_files("#files", png_file(tmp_path, "astronaut.png", astronaut))
    await expect(page.locator("#file-count")).to_have_text("1 photo chosen")
    await page.click("#submit")

    job = page.locator(".job").first
    await expect(job).to_have_attribute("data-job-id", re.compile(r".+"))
    assert await completed_image(job) == [512, 512]
    assert await job.locator("progress").evaluate("p => p.value") == 100
    await expect(job.locator(".job-status")).to_have_text("completed")
    await expect(job.locator(".error")).to_be_hidden()
    assert (await job.locator("a.download").get_attribute("href")).startswith("http")
    assert await page.evaluate("localStorage.getItem('photocraft.apiKey')") == api_key

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "web-remove-background.png"
    await page.screenshot(path=shot, full_page=True)
    print(f"screenshot: {shot}")
    assert errors == []


async def test_problem_is_shown_on_the_photo(page, api_key, tmp_path):
    """A file that is not an image: the gateway's 415 problem appears on that photo's card."""
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    await page.goto(f"{GATEWAY}/")
    await page.fill("#api-key", api_key)
    await page.set_input_files("#files", text)
    await page.click("#submit")
    job = page.locator(".job").first
    await expect(job).to_have_attribute("data-status", "failed")
    await expect(job.locator(".error")).to_contain_text("415 Not a supported image")
    await expect(job.locator(".error")).to_contain_text("notes.png")


async def test_several_photos_go_as_one_batch(page, api_key, tmp_path):
    files = [png_file(tmp_path, "a.png", SMALL), png_file(tmp_path, "b.png", SMALL[:, ::-1])]
    await page.goto(f"{GATEWAY}/")
    await page.fill("#api-key", api_key)
    await page.select_option("#operation", "remove-background")
    await page.set_input_files("#files", files)
    async with page.expect_response(f"{GATEWAY}/v1/batches") as response:
        await page.click("#submit")
    assert (await response.value).status == 202
    jobs = page.locator(".job")
    await expect(jobs).to_have_count(2)
    assert [await completed_image(jobs.nth(i)) for i in range(2)] == [[64, 64], [64, 64]]


async def test_an_anonymous_browser_keeps_its_device_token(page, tmp_path):
    # A client address of its own (the gateway trusts X-Forwarded-For from 127.0.0.1): its own daily quota.
    await page.set_extra_http_headers({"X-Forwarded-For": f"10.{os.urandom(1)[0]}.{os.urandom(1)[0]}.1"})
    await page.goto(f"{GATEWAY}/")
    await page.set_input_files("#files", png_file(tmp_path, "first.png", SMALL))
    await page.click("#submit")
    assert await completed_image(page.locator(".job").first) == [64, 64]
    token = await page.evaluate("localStorage.getItem('photocraft.deviceToken')")
    assert token

    await page.set_input_files("#files", png_file(tmp_path, "second.png", SMALL))
    async with page.expect_request(f"{GATEWAY}/v1/jobs") as request:
        await page.click("#submit")
    assert (await (await request.value).all_headers()).get("x-device-token") == token
    assert await completed_image(page.locator(".job").first) == [64, 64]
    await expect(page.locator(".job")).to_have_count(2)
    assert await page.evaluate("localStorage.getItem('photocraft.deviceToken')") == token


async def test_the_page_shows_this_months_usage_of_the_key(page, errors, settings):
    """Two jobs in the ledger of a tenant of this test alone: the page's usage table, per operation."""
    engine = make_engine(settings.database)
    tenant = f"web-usage-{secrets.token_hex(4)}"
    try:
        key = await Accounts(engine).create_key(tenant, Tier.PRO)
        for operation in ("restore", "remove-background"):
            assert await Ledger(engine).record(Usage(
                tenant=tenant, job_id=f"{tenant}-{operation}", operation=operation, tier="pro", outcome="completed",
                stages_run=1, stages_reused=0, megapixels_in=0.25, megapixels_out=1.0, finished_at=datetime.now(UTC)))
        await page.goto(f"{GATEWAY}/")
        await expect(page.locator("#usage-note")).to_contain_text("Enter an API key")
        await page.fill("#api-key", key)
        await page.click("#usage-refresh")
        rows = page.locator("#usage-table tbody tr")
        await expect(rows).to_have_count(2)
        assert await rows.evaluate_all("rs => rs.map(r => [...r.cells].map(c => c.textContent))") == [
            ["remove-background", "1", "1", "1", "0.25", "1.00"], ["restore", "1", "1", "4", "0.25", "1.00"]]
        total = page.locator("#usage-table tfoot tr")
        await expect(total).to_have_text(re.compile(r"Total\s*2\s*2\s*5\s*0\.50\s*2\.00"))
        await expect(page.locator("#usage-note")).to_contain_text(tenant)
        assert errors == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.locator("#usage").screenshot(path=SCREENSHOTS / "web-usage.png")
    finally:
        async with engine.begin() as connection:
            await connection.execute(sa.delete(usage_records).where(usage_records.c.tenant == tenant))
        await engine.dispose()
