"""Synthetic degradations of photographs, for tests and the quality benchmark.

Every function takes and returns ``(H, W, 3) uint8 RGB`` images (``downscale``
returns a smaller one) and is deterministic: randomness comes only from the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

VISIBLE_CHANGE = 12  # gray levels: defect pixels that change the luma less are left out of the masks


def gaussian_noise(image: np.ndarray, sigma: float = 25.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Sensor noise: independent zero-mean Gaussian noise of standard deviation ``sigma``
    (0..255 scale) on every channel of every pixel, clipped to 0..255.
    Without ``rng`` the noise is drawn from ``default_rng(0)``."""
    rng = np.random.default_rng(0) if rng is None else rng
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int = 15) -> np.ndarray:
    """JPEG compression artefacts (8x8 blocking, ringing, 4:2:0 colour bleeding):
    the image encoded by Pillow at ``quality`` (1..95) and decoded again."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """A low-resolution copy: Pillow's bicubic (antialiased) resize by 1/``factor``,
    at least 1x1 pixel; the input of a x``factor`` super-resolution."""
    height, width = image.shape[:2]
    size = (max(1, round(width / factor)), max(1, round(height / factor)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BICUBIC))


def _visible(image: np.ndarray, degraded: np.ndarray, drawn: np.ndarray) -> np.ndarray:
    """The drawn pixels whose luma changed by more than 12 gray levels: a light scratch
    over a white sky changes nothing and is no defect; (H, W) bool."""
    change = np.abs(_luma(degraded) - _luma(image))
    return (drawn > 0) & (change > VISIBLE_CHANGE)


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.int16)


def _level(rng: np.random.Generator) -> np.uint8:
    """Light (lost emulsion, 200-255) or dark (dirt, 0-55), with even odds."""
    return np.uint8(round(rng.uniform(200, 255) if rng.random() < 0.5 else rng.uniform(0, 55)))


def scratches(image: np.ndarray, rng: np.random.Generator, count: int = 12, *,
              widths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7), min_length: float = 15.0,
              bend: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Scratches and hairs on an old print: ``count`` lines ``widths`` px wide (thin ones
    likelier: weights 7:6:...:1), straight or curved (quadratic Bézier curves whose control
    point lies up to ``bend`` x the length to the side), at random angles, ``min_length`` px
    to 60 % of the image's diagonal long (log-uniform); each is light (lost emulsion,
    200-255) or dark (dirt, 0-55) and covers the pixels under it. Returns ``(degraded,
    mask)``; the mask ``(H, W) bool`` holds the drawn pixels that changed visibly (luma
    by more than 12 gray levels)."""
    height, width = image.shape[:2]
    diagonal = float(np.hypot(height, width))
    weights = np.arange(len(widths), 0, -1, dtype=float)
    drawn = np.zeros((height, width), np.uint8)
    degraded = image.copy()
    for _ in range(count):
        start = rng.uniform((0, 0), (width, height))
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        length = float(np.exp(rng.uniform(np.log(min_length), np.log(max(min_length, 0.6 * diagonal)))))
        offset = rng.uniform(-bend, bend) * length  # sideways offset of the control point (the middle moves half)
        control = start + direction * length / 2 + np.array([-direction[1], direction[0]]) * offset
        end = start + direction * length
        t = np.linspace(0, 1, max(2, int(length / 2)))[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        line = np.zeros_like(drawn)
        width_px = int(rng.choice(widths, p=weights / weights.sum()))
        cv2.polylines(line, [np.round(curve).astype(np.int32)], False, 1, thickness=1)
        line = cv2.dilate(line, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width_px, width_px)))
        degraded[line > 0] = _level(rng)
        drawn |= line
    return degraded, _visible(image, degraded, drawn)


def dust(image: np.ndarray, rng: np.random.Generator, count: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Dust, specks and spots on a print or scan: ``count`` filled ellipses 1-10 px across
    (log-uniform, so small specks are likelier), aspect 1-2, each light or dark like
    ``scratches``. Returns ``(degraded, mask)`` as ``scratches`` does."""
    height, width = image.shape[:2]
    drawn = np.zeros((height, width), np.uint8)
    degraded = image.copy()
    for _ in range(count):
        size = float(np.exp(rng.uniform(0, np.log(10))))
        centre = rng.uniform((0, 0), (width, height))
        axes = (max(0, round(size / 2 - 0.5)), max(0, round(size / rng.uniform(1, 2) / 2 - 0.5)))
        spot = np.zeros_like(drawn)
        cv2.ellipse(spot, (round(centre[0]), round(centre[1])), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        degraded[spot > 0] = _level(rng)
        drawn |= spot
    return degraded, _visible(image, degraded, drawn)


def tears(image: np.ndarray, rng: np.random.Generator, count: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Small tears and missing areas: ``count`` jagged pieces torn off, each a polygon
    of 40 vertices around a point on the border (a torn edge or corner; two in three) or
    inside (a hole), 4-10 % of the short side in radius, its radius varying by up to
    40 % from vertex to vertex. The piece shows what lies behind the print: paper
    (warm white, luma about 240) or, one time in four, a dark scanner lid (about 20),
    with faint noise (sigma 2). Returns ``(degraded, mask)`` as ``scratches`` does."""
    height, width = image.shape[:2]
    short = min(height, width)
    drawn = np.zeros((height, width), np.uint8)
    degraded = image.copy()
    for _ in range(count):
        if rng.random() < 2 / 3:
            side = rng.integers(4)
            along = rng.uniform(0, 1)
            centre = [(along * width, 0), (along * width, height - 1), (0, along * height),
                      (width - 1, along * height)][side]
        else:
            centre = rng.uniform((0.15 * width, 0.15 * height), (0.85 * width, 0.85 * height))
        radius = rng.uniform(0.04, 0.1) * short
        angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        radii = radius * rng.uniform(0.6, 1.4, angles.size)
        points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)
        piece = np.zeros_like(drawn)
        cv2.fillPoly(piece, [np.round(points).astype(np.int32)], 1)
        paper = np.array([242, 238, 228]) if rng.random() < 0.75 else np.array([22, 20, 20])
        fill = paper + rng.normal(0, 2, (height, width, 1))
        degraded[piece > 0] = np.clip(fill[piece > 0] + 0.5, 0, 255).astype(np.uint8)
        drawn |= piece
    return degraded, _visible(image, degraded, drawn)


def grayscale(image: np.ndarray) -> np.ndarray:
    """A black-and-white photo: the ITU-R BT.601 luma (Pillow's ``convert("L")``)
    repeated on the three channels."""
    luma = np.asarray(Image.fromarray(image).convert("L"))
    return np.repeat(luma[..., None], 3, axis=2)


# Toning: (hue of the tone in CIELAB, degrees; its chroma at full strength; the lightness 0..1 where it peaks).
# Sepia (silver sulfide) is a warm brown, selenium a cool purple-brown, cyanotype (Prussian blue) a deep blue.
TONES = {"sepia": (70.0, 28.0, 0.5), "selenium": (15.0, 14.0, 0.4), "cyanotype": (255.0, 40.0, 0.35)}


def toned(image: np.ndarray, kind: str = "sepia", strength: float = 1.0) -> np.ndarray:
    """A toned black-and-white print: the photo's CIELAB lightness kept, its colour replaced
    by the tone of ``kind`` (``TONES``: sepia, selenium or cyanotype), whose chroma is
    ``strength`` (0..1.5) x the tone's chroma at its peak lightness, falling to 0 at black and
    white (paper white stays white); the hue turns 10 degrees warmer from the shadows to the
    highlights, as toners act unevenly. Raises ValueError for an unknown kind or strength."""
    if kind not in TONES:
        raise ValueError(f"kind must be one of {', '.join(TONES)}, not {kind!r}")
    if not 0 <= strength <= 1.5:
        raise ValueError(f"strength must be from 0 to 1.5, not {strength!r}")
    hue, chroma, peak = TONES[kind]
    lightness = cv2.cvtColor(grayscale(image), cv2.COLOR_RGB2LAB)[..., 0].astype(np.float32) / 255
    # sin(pi t^gamma) is 0 at t = 0 and 1, and 1 at t = peak
    profile = np.sin(np.pi * np.clip(lightness, 0, 1) ** (np.log(0.5) / np.log(peak)))
    angle = np.radians(hue + 10 * (lightness - 0.5))
    lab = np.stack([lightness * 100, strength * chroma * profile * np.cos(angle),
                    strength * chroma * profile * np.sin(angle)], axis=-1).astype(np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


# How fast each dye of a colour print fades, relative to ``amount``: cyan (absorbs red) first, then
# yellow (absorbs blue), magenta (absorbs green) last, as in dark-stored chromogenic prints.
DYE_FADING = (0.9, 0.3, 0.55)


def faded(image: np.ndarray, amount: float = 0.6) -> np.ndarray:
    """A faded colour print: each channel's optical density D = -log10(reflectance) is scaled by
    ``1 - amount * DYE_FADING[channel]`` (the dyes fade, cyan first: a red or magenta cast and lower
    contrast), then a veil of ``0.15 * amount`` of yellowed paper white (lifted blacks).
    ``amount`` 0..1 (0: unchanged); raises ValueError outside it."""
    if not 0 <= amount <= 1:
        raise ValueError(f"amount must be from 0 to 1, not {amount!r}")
    density = -np.log10((image.astype(np.float32) + 1) / 256)
    kept = 1 - amount * np.asarray(DYE_FADING, np.float32)
    reflectance = 10 ** -(density * kept) * 256 - 1
    veil = 0.15 * amount
    paper = np.array([250, 240, 215], np.float32)
    return np.clip((1 - veil) * reflectance + veil * paper + 0.5, 0, 255).astype(np.uint8)


LOOKS = ("sepia", "selenium", "cyanotype", "faded", "gray", "colour")


def old_print(image: np.ndarray, rng: np.random.Generator, *, look: str = "sepia", fade: float = 0.6,
              grain: float = 10.0, quality: int = 50, counts: tuple[int, int, int] = (12, 40, 2),
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An old print, scanned: the quality benchmark's combined degradation, in the order it happens.

    1. The print's look: ``toned`` (``look`` sepia, selenium or cyanotype; strength 1), ``faded``
       (``look`` "faded", by ``fade``), ``grayscale`` ("gray") or the colours kept ("colour").
    2. Film grain: zero-mean Gaussian noise of standard deviation ``grain`` (0..255 scale), the
       same on the three channels (it is in the lightness), clipped.
    3. Damage to the print: ``scratches``, ``dust`` and ``tears`` with ``counts`` of each.
    4. The scan saved as JPEG at ``quality``.
    Returns ``(degraded, masks)``: ``masks`` maps "scratches", "dust" and "tears" to ``(H, W) bool``
    masks of the pixels that kind of defect changed visibly (a pixel may be in several).
    Raises ValueError for an unknown ``look`` (and as ``toned`` and ``faded`` do)."""
    if look not in LOOKS:
        raise ValueError(f"look must be one of {', '.join(LOOKS)}, not {look!r}")
    if look in TONES:
        aged = toned(image, look)
    else:
        aged = {"faded": lambda: faded(image, fade), "gray": lambda: grayscale(image), "colour": image.copy}[look]()
    noise = rng.normal(0.0, grain, aged.shape[:2])[..., None]
    aged = np.clip(aged + noise + 0.5, 0, 255).astype(np.uint8)
    masks = {}
    for name, damage, count in zip(("scratches", "dust", "tears"), (scratches, dust, tears), counts, strict=True):
        aged, masks[name] = damage(aged, rng, count)
    return jpeg(aged, quality), masks
