"""Cutting a subject out of a photo, given a coarse mask: the remove-background stage's finish.

The model's mask (any size, 0..1) is scaled to the photo, its edges refined
with a guided filter (He, Sun, Tang, "Guided Image Filtering", ECCV 2010;
OpenCV's ximgproc) that lets the mask follow the photo's own edges, then the
subject is put on the chosen background: transparent (RGBA), a solid colour,
or the photo itself blurred.
"""

from __future__ import annotations

import cv2
import numpy as np


def full_size_alpha(mask: np.ndarray, height: int, width: int, refine: bool, guide: np.ndarray) -> np.ndarray:
    """``(h, w)`` float mask -> ``(height, width) float32`` alpha in [0, 1]."""
    alpha = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    if refine:
        radius = max(2, round(min(height, width) / 160))
        guide_01 = guide.astype(np.float32) / 255.0
        alpha = cv2.ximgproc.guidedFilter(guide_01, alpha, radius, 1e-4)
    return np.clip(alpha, 0.0, 1.0)


def cut_out(rgb: np.ndarray, mask: np.ndarray, params: dict) -> np.ndarray:
    """``(H, W, 3) uint8`` photo + mask -> ``(H, W, 4) uint8`` RGBA for a transparent
    background, else ``(H, W, 3) uint8`` RGB on a solid colour or the blurred photo.

    params: ``refine`` (bool, default True); ``background``: ``{"type": "transparent"}``,
    ``{"type": "color", "color": "#rrggbb"}`` or ``{"type": "blur", "radius": pixels}``.
    """
    height, width = rgb.shape[:2]
    alpha = full_size_alpha(mask, height, width, params.get("refine", True), rgb)
    background = params.get("background", {"type": "transparent"})
    if background["type"] == "transparent":
        return np.dstack([rgb, (alpha * 255.0 + 0.5).astype(np.uint8)])
    if background["type"] == "color":
        hex_colour = background["color"].lstrip("#")
        behind = np.empty_like(rgb)
        behind[:] = [int(hex_colour[i:i + 2], 16) for i in (0, 2, 4)]
    else:
        sigma = background["radius"] / 2.0
        behind = cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma)
    a = alpha[..., np.newaxis]
    return (rgb * a + behind * (1.0 - a) + 0.5).astype(np.uint8)
