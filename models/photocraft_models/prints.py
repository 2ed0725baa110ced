"""What an old print needs: toned or gray monochrome, faded dyes, colour cast, compressed levels.

``analyse_print`` measures a photo in CIELAB (CIE 1976 L*a*b*, D65 white; OpenCV's float
conversion: L 0..100, a and b in CIELAB units) on a copy 256 px on its long side (area-averaged,
which also averages out grain); ``balance_params`` turns its result into the PARAMS of the
restore's ``balance`` stage (the ``tone`` model, photocraft_models.tone).

- Monochrome: a black-and-white print, toned or not, has one colour per lightness, of one hue.
  Its tone curve is the median (a, b) of each 5-unit bin of L, interpolated in L. A chromatic
  pixel (chroma over 8) is off the curve when it lies more than 10 units from it, counted only
  where L is flat (its 3 x 3 neighbourhood spans at most 10 L: JPEG's subsampled colour bleeds
  across edges), and off hue when its hue is more than 60 degrees from the photo's dominant hue
  (the hue of the chromatic pixels' summed (a, b)). Monochrome when under 1.5 % of the flat pixels
  are off the curve and under 1 % of all pixels off hue. Measured: toned and gray prints (grain
  up to sigma 20, scanner noise up to 6, JPEG down to quality 50) 0-0.6 % and 0-0.4 %; the colour
  photos of skimage.data each exceed one limit at least twice over (hubble_deep_field: 2.4 % off
  hue; retina: 3.7 % off the curve).
- Toned: the tone curve's chroma at its 90th percentile over the pixels is 2 or more; the kind
  follows the hue of the curve's mean (a, b): sepia (warm brown, 40-110 degrees), selenium
  (purple-brown, -40-40), cyanotype (Prussian blue, 180-300), else "other".
- Faded colour print: cyan dye fades first, leaving the shadows red or magenta, blacks lifted and
  contrast low. Faded when the photo is not monochrome and the darkest 2 % of pixels have a chroma
  of 5 or more at a hue from -60 to 45 degrees (red to magenta; brown shadows, as in
  immunohistochemistry or chelsea, lie at 50-59 even when scanned with grain and JPEG) and its
  black point (1st percentile of L, on a copy smoothed by a 2 px Gaussian so that grain does not
  lift it) is 8 or more (deep blacks mean the dyes are intact; grain of sigma 25 lifted a dark
  coffee crop's to 6). Measured on ``degrade.faded`` prints, scanned: every one from amount 0.6;
  at 0.5 all but astronaut, whose clipped black sky stays deep.
- Cast: the mean (a, b) of the darkest and lightest 2 % of pixels, which the white-patch and
  black-point assumptions take to be neutral (Land, "The Retinex Theory of Color Vision",
  Scientific American 1977).
- Colourfulness: Hasler and Suesstrunk's ("Measuring colourfulness in natural images", SPIE
  2003), for the report: 0 for gray; sepia prints measure 15-36, colour photos about 15-100, so
  it cannot tell them apart.

Thresholds were measured on the photos of skimage.data, clean and degraded with
``photocraft_models.degrade`` (toned, faded, grain, JPEG); see models/tests/test_prints.py.
"""

from __future__ import annotations

import cv2
import numpy as np

SIDE = 256  # px: the measuring copy's long side
BIN = 5.0  # L units per bin of the tone curve
OFF_CURVE = 10.0  # CIELAB units from the bin's median (a, b): off the tone curve
NEUTRAL_CHROMA = 8.0  # CIELAB chroma: pixels below it are neutral, never off the tone curve or hue
EDGE_RANGE = 10.0  # L: pixels whose 3 x 3 neighbourhood spans more are on edges, where JPEG bleeds colour
OFF_HUE = 60.0  # degrees from the photo's dominant hue: off hue
MONOCHROME_OFF_MAX = 1.5  # % of flat pixels off the tone curve, at most, for a monochrome print
MONOCHROME_HUE_MAX = 1.0  # % of pixels off hue, at most, for a monochrome print
TONED_CHROMA_MIN = 2.0  # chroma of the tone curve at 90 % of the pixels (the 90th percentile) for a toned print
EXTREME = 2.0  # % of pixels, darkest and lightest, for the casts
FADED_CHROMA_MIN = 5.0  # chroma of the darkest pixels
FADED_HUE = (-60.0, 45.0)  # degrees: the darkest pixels' hue, red to magenta
FADED_BLACK_MIN = 8.0  # L: the black point of a faded print is lifted (grain lifts it to about 6)
WASHED_RANGE_MIN = 65.0  # L: a monochrome print's levels are stretched below this range (0.5-99.5 %)
FLAT_RANGE = 5.0  # L: ... and above this one: a flat picture has no levels to stretch
SMOOTH_SIGMA = 2.0  # px of the measuring copy: the Gaussian that averages grain out of the extremes
TONES = {"sepia": (40.0, 110.0), "selenium": (-40.0, 40.0), "cyanotype": (180.0, 300.0)}
TONINGS = ("remove", "keep")


def lab(image: np.ndarray, side: int | None = SIDE) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB as ``(h, w, 3) float32`` CIELAB (L 0..100), of a copy ``side`` px on
    its long side (area-averaged; the image itself when smaller or ``side`` is None).
    Raises ValueError for another shape or dtype."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, not {image.dtype} {image.shape}")
    scale = side / max(image.shape[:2]) if side else 1.0
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def tone_curve(lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """The photo's tone curve at each pixel, ``(N, 2)``: the median (a, b) of the pixels in
    each 5-unit bin of L, linearly interpolated at each pixel's L between the bins' median L."""
    bins = np.minimum((lightness / BIN).astype(np.int64), int(100 / BIN) - 1)
    centres, medians = [], []
    for k in np.unique(bins):
        members = bins == k
        centres.append(float(np.median(lightness[members])))
        medians.append(np.median(ab[members], axis=0))
    medians = np.asarray(medians)
    return np.stack([np.interp(lightness, centres, medians[:, i]) for i in range(2)], axis=1)


def extremes_cast(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean (a, b) of the darkest and of the lightest 2 % of ``(N, 3)`` CIELAB pixels."""
    lightness = pixels[:, 0]
    dark = lightness <= np.percentile(lightness, EXTREME)
    light = lightness >= np.percentile(lightness, 100 - EXTREME)
    return pixels[dark, 1:].mean(axis=0), pixels[light, 1:].mean(axis=0)


def colourfulness(image: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness of ``(H, W, 3)`` RGB 0..255 (see the module; measured
    on the 256 px copy)."""
    r, g, b = (image[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _hue(a: float, b: float) -> float:
    """Hue angle in degrees, -180..180."""
    return float(np.degrees(np.arctan2(b, a)))


def _tone_kind(hue: float) -> str:
    for kind, (low, high) in TONES.items():
        if low <= hue <= high or low <= hue + 360 <= high:
            return kind
    return "other"


def analyse_print(image: np.ndarray, toning: str = "remove") -> dict:
    """What the print ``(H, W, 3) uint8`` RGB needs (see the module), as JSON-ready values:
    ``monochrome`` bool, ``toned`` "none" | "sepia" | "selenium" | "cyanotype" | "other",
    ``faded`` bool, ``cast`` [a, b] (the extremes' mean, CIELAB units, which equal OpenCV's
    8-bit offsets from 128), ``tone`` [a, b] (the tone curve's mean; [0, 0] for colour photos),
    ``colourfulness``, ``off_curve`` (% of flat pixels), ``off_hue`` (% of pixels), ``shadows``
    [a, b], ``levels`` [black, white] (L at 0.5 and 99.5 %), ``toning`` as given.
    Raises ValueError for another ``toning``, or an image that is not (H, W, 3) uint8."""
    if toning not in TONINGS:
        raise ValueError(f"toning must be one of {', '.join(TONINGS)}, not {toning!r}")
    picture = lab(image)
    pixels = picture.reshape(-1, 3)
    lightness, ab = pixels[:, 0], pixels[:, 1:]
    curve = tone_curve(lightness, ab)
    chromatic = np.hypot(*ab.T) > NEUTRAL_CHROMA
    square = np.ones((3, 3), np.uint8)
    flat = ((cv2.dilate(picture[..., 0], square) - cv2.erode(picture[..., 0], square)) <= EDGE_RANGE).reshape(-1)
    off_curve = float(((np.hypot(*(ab - curve).T) > OFF_CURVE) & chromatic & flat).sum() / max(flat.sum(), 1) * 100)
    dominant = ab[chromatic].sum(axis=0) if chromatic.any() else np.array([1.0, 0.0])
    turn = np.abs(np.angle(np.exp(1j * (np.arctan2(ab[:, 1], ab[:, 0]) - np.arctan2(dominant[1], dominant[0])))))
    off_hue = float((chromatic & (np.degrees(turn) > OFF_HUE)).mean() * 100)
    monochrome = off_curve < MONOCHROME_OFF_MAX and off_hue < MONOCHROME_HUE_MAX
    tone = curve.mean(axis=0) if monochrome else np.zeros(2, np.float32)
    toned = "none"
    if monochrome and float(np.percentile(np.hypot(*curve.T), 90)) >= TONED_CHROMA_MIN:
        toned = _tone_kind(_hue(*tone))
    # Extremes on a smoothed copy: grain and noise would lift the black point and tint the shadows.
    smooth = cv2.GaussianBlur(picture, (0, 0), SMOOTH_SIGMA).reshape(-1, 3)
    shadows, highlights = extremes_cast(smooth)
    black, white = np.percentile(smooth[:, 0], [0.5, 99.5])
    faded = (not monochrome and float(np.hypot(*shadows)) >= FADED_CHROMA_MIN
             and FADED_HUE[0] <= _hue(*shadows) <= FADED_HUE[1]
             and float(np.percentile(smooth[:, 0], 1)) >= FADED_BLACK_MIN)
    cast = (shadows + highlights) / 2

    def pair(values: np.ndarray) -> list[float]:
        return [round(float(v), 1) for v in values]

    return {
        "monochrome": monochrome,
        "toned": toned,
        "faded": faded,
        "cast": pair(cast),
        "tone": pair(tone),
        "colourfulness": round(colourfulness(np.clip(cv2.cvtColor(picture, cv2.COLOR_LAB2RGB) * 255 + 0.5, 0, 255)), 1),
        "off_curve": round(off_curve, 2),
        "off_hue": round(off_hue, 2),
        "shadows": pair(shadows),
        "levels": pair([black, white]),
        "toning": toning,
    }


def balance_params(analysis: dict) -> dict:
    """The ``balance`` stage's PARAMS for ``analysis`` (``analyse_print``'s result): ``neutralise``
    1 for a toned print when toning is "remove"; ``dyes``, ``cast`` and ``levels`` 1 for a faded
    print; ``levels`` 1 for a monochrome print whose levels span 5 to 65 L; else 0 (each a
    strength 0..1 of photocraft_models.tone.Tone). All 0: nothing to correct."""
    toned = analysis["toned"] != "none"
    black, white = analysis["levels"]
    washed = analysis["monochrome"] and FLAT_RANGE < white - black < WASHED_RANGE_MIN
    faded = analysis["faded"]
    return {
        "neutralise": 1.0 if toned and analysis["toning"] == "remove" else 0.0,
        "dyes": 1.0 if faded else 0.0,
        "cast": 1.0 if faded else 0.0,
        "levels": 1.0 if faded or washed else 0.0,
    }
