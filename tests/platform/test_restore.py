"""restore through the platform: an analysis picks the stages, the result beats
classical baselines on the damage it addresses, and a second job reuses the first's work."""

from __future__ import annotations

import os

import cv2
import numpy as np
from skimage import data
from skimage.metrics import peak_signal_noise_ratio as psnr

from .helpers import absent, download, job_events, png_bytes

CLEAN = np.ascontiguousarray(data.astronaut()[40:296, 128:384])


def degraded(kind: str, seed: int = 3) -> np.ndarray:
    """Gaussian noise (sigma 25) or ten light scratches on a crop of the astronaut."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return np.clip(CLEAN + rng.normal(0, 25, CLEAN.shape), 0, 255).astype(np.uint8)
    scratched = CLEAN.copy()
    for _ in range(10):
        x0, y0, x1, y1 = rng.integers(0, 256, 4)
        cv2.line(scratched, (int(x0), int(y0)), (int(x1), int(y1)), (240, 240, 240), 1)
    return scratched


def stages_done(events: list[dict]) -> list[str]:
    """Stages that ran or were reused, in order (skipped ones are not listed)."""
    return [e["stage"] for e in events if e["type"] == "stage_completed"]


def stages_run(events: list[dict]) -> list[str]:
    """Stages a worker ran, in order. A task may run twice (delivery is at least once, e.g. when
    a consumer group rebalances), so each stage is listed once."""
    return list(dict.fromkeys(e["stage"] for e in events if e["type"] == "started"))


async def test_restore_denoises_a_noisy_photo_better_than_non_local_means(gateway):
    noisy = degraded("noise")
    events = await job_events(gateway, "restore", {}, png_bytes(noisy))
    assert events[-1]["type"] == "completed", events[-1]
    assert stages_done(events)[:2] == ["analyze", "denoise"] and "descratch" not in stages_done(events)
    restored = np.asarray(download(events[-1]["results"][0]))
    assert restored.shape == CLEAN.shape
    best_baseline = max(psnr(CLEAN, cv2.fastNlMeansDenoisingColored(noisy, None, h, h, 7, 21)) for h in (10, 15, 20))
    assert psnr(CLEAN, restored) > best_baseline + 1.0 > psnr(CLEAN, noisy) + 1.0


async def test_restore_removes_scratches_better_than_telea_inpainting(gateway):
    scratched = degraded("scratches")
    events = await job_events(gateway, "restore", {}, png_bytes(scratched))
    assert "descratch" in stages_done(events) and "denoise" not in stages_done(events)
    restored = np.asarray(download(events[-1]["results"][0]))
    gray = cv2.cvtColor(scratched, cv2.COLOR_RGB2GRAY)
    simple_mask = cv2.dilate((cv2.absdiff(gray, cv2.medianBlur(gray, 5)) > 30).astype(np.uint8), np.ones((3, 3)))
    telea = cv2.inpaint(scratched, simple_mask, 3, cv2.INPAINT_TELEA)
    assert psnr(CLEAN, restored) > psnr(CLEAN, telea) + 1.0


async def test_a_second_job_on_the_same_photo_reuses_every_stage(gateway):
    photo = png_bytes(degraded("noise", seed=int.from_bytes(os.urandom(4))))  # a photo no earlier run saw
    first = await job_events(gateway, "restore", {"upscale": 2}, photo)
    second = await job_events(gateway, "restore", {"upscale": 2}, photo)
    assert first[-1]["type"] == second[-1]["type"] == "completed"
    assert len(stages_run(first)) >= 3 and stages_run(second) == []
    assert np.array_equal(np.asarray(download(first[-1]["results"][0])),
                          np.asarray(download(second[-1]["results"][0])))
    # Without the upscale, what comes before it is reused and what comes after runs again.
    third = await job_events(gateway, "restore", {"upscale": 1}, photo)
    assert not {"analyze", "denoise"} & set(stages_run(third)) and "tone" in stages_run(third)


async def test_restore_of_a_gray_photo_says_it_could_not_colorize(gateway):
    gray = np.stack([data.camera()[:200, :200]] * 3, axis=2)
    async with absent("colorize_eccv16"):
        events = await job_events(gateway, "restore", {}, png_bytes(gray))
    assert events[-1]["type"] == "completed", events[-1]
    assert "colorize: model colorize_eccv16 is not installed; the photo stays black-and-white" in events[-1]["warnings"]
    assert download(events[-1]["results"][0]).size == (200, 200)
