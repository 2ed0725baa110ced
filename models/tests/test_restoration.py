"""Restoration analysis and scratch removal on real photos (skimage.data), clean and
degraded with photocraft_models.degrade."""

from __future__ import annotations

import json
from functools import cache

import cv2
import numpy as np
import pytest
from photocraft_models import degrade
from photocraft_models.restoration import Analyze, Descratch, baseline_descratch
from photocraft_models.serving import Output
from skimage import data

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry"]
CLEANING = ("denoise", "dejpeg", "descratch")


@cache
def photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


@cache
def scratched(name: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Thin (1-3 px), gently bent scratches 10-60 % of the diagonal long: what Descratch finds
    reliably (models/tests/test_defects.py measures the whole range of degrade.scratches)."""
    image = photo(name)
    return degrade.scratches(image, np.random.default_rng(seed), widths=(1, 2, 3), bend=0.08,
                             min_length=0.1 * float(np.hypot(*image.shape[:2])))


def name_size(name: str) -> int:
    return photo(name).shape[0] * photo(name).shape[1]


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = np.mean((image.astype(np.float64) - reference) ** 2)
    return float(10 * np.log10(255**2 / mse))


@pytest.fixture(scope="module")
def analyze(trained) -> Analyze:
    return Analyze(trained, {})


@pytest.fixture(scope="module")
def descratch(trained) -> Descratch:
    return Descratch(trained, {})


def running(info: dict) -> set[str]:
    return {name for name, stage in info["stages"].items() if stage["run"]}


# degrade


def test_degradations_are_deterministic():
    image = photo("astronaut")
    noisy = degrade.gaussian_noise(image, 25, np.random.default_rng(7))
    assert np.array_equal(noisy, degrade.gaussian_noise(image, 25, np.random.default_rng(7)))
    assert not np.array_equal(noisy, degrade.gaussian_noise(image, 25, np.random.default_rng(8)))
    assert abs(float((noisy.astype(float) - image).std()) - 25) < 3

    first, second = (degrade.scratches(image, np.random.default_rng(7)) for _ in range(2))
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])
    assert not np.array_equal(first[1], degrade.scratches(image, np.random.default_rng(8))[1])

    assert np.array_equal(degrade.jpeg(image, 15), degrade.jpeg(image, 15))
    assert np.array_equal(degrade.downscale(image, 2), degrade.downscale(image, 2))


def test_degradations_shapes():
    image = photo("coffee")  # 400 x 600
    assert degrade.jpeg(image).shape == image.shape and degrade.jpeg(image).dtype == np.uint8
    assert degrade.downscale(image, 4).shape == (100, 150, 3)
    gray = degrade.grayscale(image)
    assert gray.shape == image.shape and (gray == gray[..., :1]).all()
    for damage in (degrade.scratches, degrade.dust, degrade.tears):
        damaged, mask = damage(image, np.random.default_rng(0))
        assert mask.dtype == bool and mask.shape == image.shape[:2] and 0.001 < mask.mean() < 0.1
        change = np.abs(cv2.cvtColor(damaged, cv2.COLOR_RGB2GRAY).astype(int) - cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
        assert (change[~mask] <= degrade.VISIBLE_CHANGE).all() and (change[mask] > degrade.VISIBLE_CHANGE).all()


# Analyze


def test_analysis_is_json(analyze):
    info = analyze(photo("astronaut"), {})
    assert json.loads(json.dumps(info)) == info
    assert {"noise_sigma", "blockiness", "defects", "faces", "stages"} <= set(info)
    assert set(info["defects"]) == {"scratches", "dust", "tears"}
    assert set(info["stages"]) == {"denoise", "dejpeg", "descratch", "balance", "faces", "colorize"}
    assert 0 <= info["stages"]["denoise"]["params"]["strength"] <= 1
    assert info["stages"]["dejpeg"]["params"]["noise"] in (1, 2, 3)


@pytest.mark.parametrize("name", PHOTOS)
def test_clean_photo_needs_no_cleaning(analyze, name):
    info = analyze(photo(name), {})
    assert not running(info) & set(CLEANING), info
    assert info["noise_sigma"] < 3 and info["blockiness"] < 0.25
    # under descratch's 0.7 % (the network marks camera's tripod: 0.67 %)
    assert info["defects"]["scratches"]["pixels"] < 0.009 * name_size(name) and info["defects"]["tears"]["pixels"] == 0


@pytest.mark.parametrize("name", PHOTOS)
def test_noise_is_denoised(analyze, name):
    info = analyze(degrade.gaussian_noise(photo(name), 25, np.random.default_rng(0)), {})
    assert running(info) & set(CLEANING) == {"denoise"}, info
    assert 22 < info["noise_sigma"] < 28
    assert info["stages"]["denoise"]["params"]["strength"] == 1.0


@pytest.mark.parametrize("name", PHOTOS)
def test_jpeg_is_dejpegged(analyze, name):
    info = analyze(degrade.jpeg(photo(name), 15), {})
    assert running(info) & set(CLEANING) == {"dejpeg"}, info
    assert info["stages"]["dejpeg"]["params"]["noise"] == 3


@pytest.mark.parametrize("name", PHOTOS)
def test_scratches_are_descratched(analyze, name):
    info = analyze(scratched(name)[0], {})
    assert running(info) & set(CLEANING) == {"descratch"}, info


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "camera"])
def test_grayscale_is_colorized(analyze, name):
    info = analyze(degrade.grayscale(photo(name)), {})
    assert info["print"]["monochrome"] and "colorize" in running(info)
    assert not running(info) & set(CLEANING)


def test_colour_photo_is_not_colorized(analyze):
    info = analyze(photo("coffee"), {})
    assert not info["print"]["monochrome"] and "colorize" not in running(info)


def test_faces(analyze):
    astronaut, coffee = analyze(photo("astronaut"), {}), analyze(photo("coffee"), {})
    assert astronaut["faces"] >= 1 and "faces" in running(astronaut)
    assert coffee["faces"] == 0 and "faces" not in running(coffee)


# Descratch


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_descratch_beats_baseline(descratch, name):
    damaged, _ = scratched(name)
    restored = descratch(damaged, {}).image
    before, baseline, after = (psnr(x, photo(name)) for x in (damaged, baseline_descratch(damaged), restored))
    # measured: astronaut 26.3 -> 30.1 dB, coffee 25.8 -> 29.8, chelsea 26.0 -> 40.2, camera 26.2 -> 28.3 (the
    # classical detectors alone gained over 5 dB here; the defect network's own marks on clean detail cost some)
    assert after > before + 1.5, (before, baseline, after)
    assert after > baseline + 3, (before, baseline, after)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_descratch_finds_the_scratches(descratch, name):
    damaged, truth = scratched(name)
    found = descratch(damaged, {}).mask > 0
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))  # within 2 px
    recall = (truth & (cv2.dilate(found.astype(np.uint8), disc) > 0)).sum() / truth.sum()
    precision = (found & (cv2.dilate(truth.astype(np.uint8), disc) > 0)).sum() / found.sum()
    assert recall > 0.65 and precision > 0.6, (recall, precision)  # measured: coffee 0.70 / 0.70


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea", "camera"])
def test_descratch_leaves_clean_photos_alone(descratch, name):
    image = photo(name)
    out = descratch(image, {})
    # measured: at most 1.0 % (camera's tripod and coat edges), 0.7 % on astronaut and coffee
    assert (out.image != image).any(axis=2).mean() < 0.012
    assert (out.mask > 0).mean() < 0.012


def test_descratch_changes_only_the_mask(descratch):
    damaged, _ = scratched("rocket", seed=3)
    out = descratch(damaged, {})
    assert isinstance(out, Output)
    assert out.image.shape == damaged.shape and out.image.dtype == np.uint8
    assert out.mask.shape == damaged.shape[:2] and out.mask.dtype == np.uint8
    assert set(np.unique(out.mask)) == {0, 255}
    outside = out.mask == 0
    assert np.array_equal(out.image[outside], damaged[outside])
    assert out.info["pixels"] == int((out.mask > 0).sum()) > 0
    assert set(out.info) == {"scratches", "dust", "tears", "pixels"}


def test_baseline_keeps_shape():
    damaged, _ = scratched("chelsea")
    restored = baseline_descratch(damaged)
    assert restored.shape == damaged.shape and restored.dtype == np.uint8
