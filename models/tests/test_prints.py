"""Toned and faded prints: recognition (photocraft_models.prints), the balance stage's decisions
(restoration.Analyze) and its corrections (tone.Tone), on real photos (skimage.data) made old by
photocraft_models.degrade."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from photocraft_models import degrade
from photocraft_models.prints import analyse_print, balance_params
from photocraft_models.restoration import Analyze
from photocraft_models.serving import InvalidInput
from photocraft_models.tone import Tone
from skimage import data
from skimage.color import deltaE_ciede2000, rgb2lab

COLOUR = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field", "retina"]
TONED_FROM = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins"]
# hubble_deep_field is left out: a faded print of a black sky has no colour left to tell it from a toned one
FADED_FROM = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry"]
BALANCE_OFF = {"contrast": 0.0, "saturation": 0.0, "sharpen": 0.0}  # the restore recipe's balance stage


@cache
def photo(name: str) -> np.ndarray:
    image = getattr(data, name)()
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image


def scanned(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An old print as scanned: film grain (the same on the three channels, sigma 0, 10 or 20),
    scanner noise (per channel, sigma 0, 3 or 6) and JPEG (none, quality 90, 70 or 50)."""
    grain, noise, quality = rng.choice([0, 10, 20]), rng.choice([0, 3, 6]), rng.choice([0, 90, 70, 50])
    if grain:
        image = np.clip(image + rng.normal(0, grain, image.shape[:2])[..., None] + 0.5, 0, 255).astype(np.uint8)
    if noise:
        image = degrade.gaussian_noise(image, float(noise), rng)
    return degrade.jpeg(image, int(quality)) if quality else image


def mean_delta_e(image: np.ndarray, reference: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference (Sharma, Wu, Dalal, Color Res. Appl. 2005), over every
    other pixel of every other row."""
    return float(deltaE_ciede2000(rgb2lab(image[::2, ::2]), rgb2lab(reference[::2, ::2])).mean())


def chroma(image: np.ndarray) -> float:
    lab = rgb2lab(image)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


@pytest.fixture(scope="module")
def tone() -> Tone:
    return Tone(None, {})


@pytest.fixture(scope="module")
def analyze(trained) -> Analyze:
    return Analyze(trained, {})


# degrade


def test_toned_and_faded_prints_are_made_as_documented():
    image = photo("coffee")
    sepia = degrade.toned(image, "sepia")
    assert sepia.shape == image.shape and sepia.dtype == np.uint8
    lab = rgb2lab(sepia)
    assert np.abs(lab[..., 0] - rgb2lab(degrade.grayscale(image))[..., 0]).mean() < 1  # lightness kept
    hue = np.degrees(np.arctan2(lab[..., 2].mean(), lab[..., 1].mean()))
    assert 50 < hue < 90 and 15 < chroma(sepia) < 36
    assert chroma(degrade.toned(image, "sepia", 0.5)) < chroma(sepia)
    assert np.array_equal(degrade.toned(image, "cyanotype", 0.0), degrade.toned(image, "sepia", 0.0))
    assert np.array_equal(degrade.faded(image, 0.0), image)
    faded = degrade.faded(image, 0.6).astype(float)
    assert (faded.min(axis=(0, 1)) > image.min(axis=(0, 1))).all()  # blacks lifted
    assert faded[..., 0].mean() - faded[..., 1].mean() > image[..., 0].mean() - image[..., 1].mean() + 10  # red
    with pytest.raises(ValueError, match="kind"):
        degrade.toned(image, "platinum")
    with pytest.raises(ValueError, match="amount"):
        degrade.faded(image, 1.5)


# recognition


@pytest.mark.parametrize("name", COLOUR + ["colorwheel"])
def test_colour_photo_is_neither_toned_nor_faded(name):
    rng = np.random.default_rng(2)
    for image in [photo(name)] + [scanned(photo(name), rng) for _ in range(4)]:
        result = analyse_print(image)
        assert not result["monochrome"] and result["toned"] == "none" and not result["faded"], result
        assert not any(balance_params(result).values())


@pytest.mark.parametrize("name", ["camera", "coins", "astronaut", "chelsea"])
def test_gray_photo_is_monochrome_and_not_toned(name):
    rng = np.random.default_rng(3)
    for image in (degrade.grayscale(photo(name)), scanned(degrade.grayscale(photo(name)), rng)):
        result = analyse_print(image)
        assert result["monochrome"] and result["toned"] == "none" and not result["faded"], result


def test_toned_prints_are_recognised_with_their_kind():
    rng = np.random.default_rng(15)
    found = {kind: [] for kind in degrade.TONES}
    for kind in degrade.TONES:
        for i in range(36):
            image = degrade.toned(photo(TONED_FROM[i % len(TONED_FROM)]), kind, float(rng.uniform(0.4, 1.2)))
            result = analyse_print(scanned(image, rng))
            found[kind].append(result["monochrome"] and result["toned"] == kind)
    rates = {kind: float(np.mean(hits)) for kind, hits in found.items()}
    assert min(rates.values()) >= 0.95, rates


def test_faded_prints_are_recognised():
    """From amount 0.6; below it astronaut's clipped black sky keeps its blacks too deep (0.5: 1 in 6)."""
    rng = np.random.default_rng(16)
    hits = []
    for i in range(40):
        image = degrade.faded(photo(FADED_FROM[i % len(FADED_FROM)]), float(rng.uniform(0.6, 0.9)))
        hits.append(analyse_print(scanned(image, rng))["faded"])
    assert np.mean(hits) >= 0.95, np.mean(hits)


@pytest.mark.parametrize("look", ["sepia", "selenium", "cyanotype", "faded"])
def test_old_prints_with_defects_are_recognised(look):
    """The quality benchmark's old prints: scratches, dust, tears, grain and JPEG over the look."""
    for i, name in enumerate(["astronaut", "coffee", "chelsea", "rocket"]):
        image, _ = degrade.old_print(photo(name), np.random.default_rng(i), look=look)
        result = analyse_print(image)
        assert result["faded"] if look == "faded" else result["toned"] == look, (name, result)


def test_bad_toning_is_refused(analyze):
    with pytest.raises(ValueError, match="toning"):
        analyse_print(photo("coffee"), "sepia")
    with pytest.raises(InvalidInput, match="toning"):
        analyze(photo("coffee"), {"toning": "neutral"})


# decisions


def test_toned_print_is_neutralised_and_colorized_unless_kept(analyze):
    sepia = degrade.toned(photo("chelsea"), "sepia")
    removed, kept = analyze(sepia, {}), analyze(sepia, {"toning": "keep"})
    assert removed["print"]["toned"] == "sepia" and removed["print"]["toning"] == "remove"
    assert removed["stages"]["balance"]["run"] and removed["stages"]["balance"]["params"]["neutralise"] == 1
    assert removed["stages"]["colorize"]["run"]
    assert kept["print"]["toned"] == "sepia"
    assert kept["stages"]["balance"]["params"]["neutralise"] == 0 and not kept["stages"]["colorize"]["run"]


def test_faded_print_is_balanced_and_not_colorized(analyze):
    info = analyze(degrade.faded(photo("astronaut"), 0.7), {})
    assert info["print"]["faded"] and not info["stages"]["colorize"]["run"]
    assert info["stages"]["balance"] == {"run": True, "params": {"neutralise": 0.0, "dyes": 1.0, "cast": 1.0,
                                                                  "levels": 1.0}}


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_colour_photo_in_good_condition_is_not_balanced(analyze, name):
    info = analyze(photo(name), {})
    assert not info["stages"]["balance"]["run"] and not info["stages"]["colorize"]["run"]


def test_washed_out_gray_print_gets_its_levels_stretched():
    gray = degrade.grayscale(photo("camera")).astype(np.float32)
    washed = (60 + gray * 0.45).astype(np.uint8)  # blacks at 60, whites at 175
    assert balance_params(analyse_print(washed)) == {"neutralise": 0.0, "dyes": 0.0, "cast": 0.0, "levels": 1.0}


# corrections


def test_every_parameter_at_zero_changes_nothing(tone):
    image = degrade.faded(photo("coffee"), 0.6)
    zero = {**BALANCE_OFF, "neutralise": 0, "dyes": 0, "cast": 0, "levels": 0}
    out = tone(image, zero)
    assert np.array_equal(out.image, image) and out.info == {}
    with pytest.raises(InvalidInput, match="dyes"):
        tone(image, {"dyes": 2})


@pytest.mark.parametrize("kind", list(degrade.TONES))
def test_neutralising_a_toned_print_gives_back_its_gray(tone, kind):
    gray = degrade.grayscale(photo("astronaut"))
    toned = degrade.toned(photo("astronaut"), kind)
    out = tone(toned, {**BALANCE_OFF, **balance_params(analyse_print(toned))}).image
    assert chroma(toned) > 8 and chroma(out) < 0.5
    assert np.abs(out.astype(float) - gray).mean() < 2.0  # gray levels
    assert mean_delta_e(out, gray) < 1.0


def test_keeping_the_tone_keeps_it(tone):
    toned = degrade.toned(photo("camera"), "selenium")
    params = balance_params(analyse_print(toned, "keep"))
    out = tone(toned, {**BALANCE_OFF, **params}).image
    assert params["neutralise"] == 0 and mean_delta_e(out, toned) < 1.0


@cache
def fade_restoration(name: str, amount: float) -> tuple[float, float, list[float]]:
    """Mean CIEDE2000 from the original of the faded print and of its restoration, and the dye gains."""
    faded = degrade.faded(photo(name), amount)
    out = Tone(None, {})(faded, {**BALANCE_OFF, **balance_params(analyse_print(faded))})
    return mean_delta_e(faded, photo(name)), mean_delta_e(out.image, photo(name)), out.info["balance"]["dye_gain"]


@pytest.mark.parametrize("name", ["astronaut", "coffee", "rocket"])
def test_fade_restoration_brings_the_print_back(name):
    for amount in (0.6, 0.75, 0.9):
        before, after, gains = fade_restoration(name, amount)
        assert after < 0.7 * before, (amount, before, after)
        assert gains[0] > 1.1  # the cyan dye (red channel) restored most


def test_fade_restoration_helps_on_average():
    """On every faded source photo, including those whose true colours break the white-patch and
    equal-dye-range assumptions (chelsea's orange cat, immunohistochemistry's brown stain)."""
    distances = np.array([fade_restoration(name, amount)[:2] for name in FADED_FROM for amount in (0.6, 0.75, 0.9)])
    assert distances[:, 1].mean() < 0.7 * distances[:, 0].mean(), distances.round(1)
