"""A real photo through the whole platform: gateway, Kafka, scheduler, Triton, S3, notifier."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image
from skimage import data as samples

from .helpers import events_until, fresh, png_bytes, submit, tenant_key


async def test_remove_background_end_to_end(gateway, astronaut):
    astronaut = fresh(astronaut)
    response = await submit(gateway, png_bytes(astronaut), "astronaut.png")
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["status"] == "queued"
    assert job["events_url"] == f"ws://127.0.0.1:8081/v1/jobs/{job['job_id']}/events"

    events = await events_until(job)
    types = [e["type"] for e in events]
    assert types[0] == "received" and types[-1] == "completed", types
    assert {"queued", "started", "progress", "stage_completed"} <= set(types)
    assert types.index("queued") < types.index("started") < types.index("progress")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    percents = [e["percent"] for e in events if e["type"] == "progress"]
    assert percents == sorted(percents) and percents[0] > 0 and percents[-1] <= 100

    status = await gateway.get(f"/v1/jobs/{job['job_id']}",
                               headers={"Authorization": f"Bearer {job['token']}"})
    assert status.status_code == 200
    view = status.json()
    assert view["status"] == "completed" and view["operation"] == "remove-background"
    assert view["result_url"] == view["results"][0]["url"]

    result = httpx.get(events[-1]["result_url"], timeout=30)
    assert result.status_code == 200
    image = Image.open(io.BytesIO(result.content))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (512, 512)
    rgba = np.asarray(image)
    visible = rgba[..., 3] > 0  # fully transparent pixels are stored black
    assert np.array_equal(rgba[..., :3][visible], astronaut[visible]), "visible colours must be the input's"
    assert (rgba[..., :3][~visible] == 0).all()
    alpha = rgba[..., 3].astype(float)
    # Background: the two top corners (studio backdrop). Subject: the face.
    assert alpha[:40, :40].mean() < 10 and alpha[:40, -40:].mean() < 10
    assert alpha[90:180, 180:240].mean() > 245
    # A real mask, not a constant: a large share of the picture is background.
    assert 0.2 < (alpha < 128).mean() < 0.6


async def test_job_status_needs_the_jobs_token_or_its_tenants_key(gateway, anonymous, astronaut):
    job = (await submit(gateway, png_bytes(astronaut[::4, ::4]))).json()
    url = f"/v1/jobs/{job['job_id']}"

    missing = await anonymous.get(url)
    wrong = await anonymous.get(url, headers={"Authorization": "Bearer not-the-token"})
    other_tenant = await anonymous.get(url, headers={"Authorization": f"Bearer {tenant_key('someone-else', 'pro')}"})
    unknown = await anonymous.get("/v1/jobs/0123456789abcdef", headers={"Authorization": "Bearer x"})
    by_token = await anonymous.get(url, headers={"Authorization": f"Bearer {job['token']}"})
    by_owner = await gateway.get(url)

    assert [r.status_code for r in (missing, wrong, other_tenant, unknown)] == [401, 404, 404, 404]
    for response in (missing, wrong, other_tenant, unknown):
        assert response.headers["content-type"] == "application/problem+json"
    assert by_token.status_code == by_owner.status_code == 200
    await events_until(job)  # let it finish before the next test


async def test_portrait_against_the_sky_from_a_grayscale_jpeg(gateway):
    """scikit-image's cameraman: a grayscale portrait with a plain sky behind him."""
    buffer = io.BytesIO()
    Image.fromarray(samples.camera()).save(buffer, format="JPEG", quality=90)
    job = (await submit(gateway, buffer.getvalue(), "camera.jpg")).json()

    events = await events_until(job)

    assert events[-1]["type"] == "completed", events[-1]
    image = Image.open(io.BytesIO(httpx.get(events[-1]["result_url"], timeout=30).content))
    assert image.mode == "RGBA" and image.size == (512, 512)
    alpha = np.asarray(image)[..., 3].astype(float)
    assert alpha[:60, :60].mean() < 5 and alpha[:60, -60:].mean() < 5  # sky
    assert alpha[110:180, 185:235].mean() > 240  # face
