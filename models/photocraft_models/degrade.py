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


def scratches(image: np.ndarray, rng: np.random.Generator, count: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Scratches and hairs on an old print: ``count`` thin lines, 1-3 px wide, straight
    or slightly bent (quadratic Bézier curves), at random angles, 10-60 % of the image's
    diagonal long; each is light (lost emulsion, 200-255) or dark (dirt, 0-55) and covers
    the pixels under it. Returns ``(degraded, mask)``, mask ``(H, W) bool`` of the drawn pixels."""
    height, width = image.shape[:2]
    diagonal = float(np.hypot(height, width))
    mask = np.zeros((height, width), np.uint8)
    degraded = image.copy()
    for _ in range(count):
        start = rng.uniform((0, 0), (width, height))
        angle = rng.uniform(0, np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        length = rng.uniform(0.1, 0.6) * diagonal
        bend = rng.uniform(-0.08, 0.08) * length  # sideways offset of the control point (the middle moves half as far)
        control = start + direction * length / 2 + np.array([-direction[1], direction[0]]) * bend
        end = start + direction * length
        t = np.linspace(0, 1, max(2, int(length / 4)))[:, None]
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        line = np.zeros_like(mask)
        cv2.polylines(line, [np.round(curve).astype(np.int32)], False, 1)
        width_px = int(rng.integers(1, 4))
        line = cv2.dilate(line, np.ones((width_px, width_px), np.uint8))
        level = rng.uniform(200, 255) if rng.random() < 0.5 else rng.uniform(0, 55)
        degraded[line > 0] = np.uint8(round(level))
        mask |= line
    return degraded, mask.astype(bool)


def grayscale(image: np.ndarray) -> np.ndarray:
    """A black-and-white photo: the ITU-R BT.601 luma (Pillow's ``convert("L")``)
    repeated on the three channels."""
    luma = np.asarray(Image.fromarray(image).convert("L"))
    return np.repeat(luma[..., None], 3, axis=2)
