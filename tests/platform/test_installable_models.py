"""Colorize and text-to-image: models whose weights no registry package ships.

Without their weights the gateway refuses their jobs (503, naming the
model). With a checkpoint of the real architecture and random weights, built
by the test and installed the way real weights are, the real serving code runs
end to end. Random weights test plumbing: the pictures mean nothing.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from skimage import data

from .helpers import absent, download, fresh, job_events, png_bytes, random_checkpoint


@pytest.mark.parametrize(("operation", "model", "params", "photo"), [
    ("colorize", "colorize_eccv16", {}, png_bytes(data.camera()[:64, :64])),
    ("text-to-image", "sd_turbo", {"prompt": "a red bicycle"}, None),
])
async def test_jobs_needing_an_absent_model_are_refused_naming_it(gateway, operation, model, params, photo):
    async with absent(model):
        files = {"file": ("a.png", photo)} if photo else None
        response = await gateway.post("/v1/jobs", data={"operation": operation, "params": json.dumps(params)},
                                      files=files)
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/model-not-installed" and model in response.json()["detail"]


async def test_colorize_runs_its_real_code_on_a_random_checkpoint(gateway, tmp_path):
    gray = fresh(np.stack([data.camera()[:200, :300]] * 3, axis=2))
    async with random_checkpoint("colorize_eccv16", tmp_path):
        events = await job_events(gateway, "colorize", {}, png_bytes(gray))
    assert events[-1]["type"] == "completed", events[-1]
    image = download(events[-1]["results"][0])
    assert image.size == (300, 200) and image.mode == "RGB"


async def test_text_to_image_streams_a_progress_event_per_step(gateway, tmp_path):
    params = {"prompt": "a red bicycle", "steps": 3, "width": 96, "height": 64,
              "seed": int.from_bytes(os.urandom(3))}  # a new seed: no earlier result to reuse
    async with random_checkpoint("sd_turbo", tmp_path):
        events = await job_events(gateway, "text-to-image", params)
    assert events[-1]["type"] == "completed", events[-1]
    steps = [e["message"] for e in events if e["type"] == "progress" and e["message"].startswith("step")]
    assert steps == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    image = download(events[-1]["results"][0])
    assert image.size == (96, 64) and image.mode == "RGB"
