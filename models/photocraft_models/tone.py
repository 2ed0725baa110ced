"""Tone and colour: local contrast, saturation and sharpness, on OpenCV.

Contrast: CLAHE (Zuiderveld, "Contrast Limited Adaptive Histogram
Equalization", Graphics Gems IV, 1994) on the L channel of CIELAB, blended
with the original L by ``contrast``. Saturation scales the a and b channels.
Sharpening is an unsharp mask on L only, so edges gain no colour fringes.
Every parameter at 0 returns the image unchanged.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .params import number
from .serving import Output


class Tone:
    """Filter. PARAMS ``contrast`` 0..1 (default 0.4), ``saturation`` -1..1 (default 0.1),
    ``sharpen`` 0..1 (default 0.3)."""

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        contrast = number(params, "contrast", 0.4, 0.0, 1.0)
        saturation = number(params, "saturation", 0.1, -1.0, 1.0)
        sharpen = number(params, "sharpen", 0.3, 0.0, 1.0)
        if contrast == saturation == sharpen == 0:
            return Output(image.copy())
        lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float32)
        lightness = lab[..., 0]
        if contrast:
            equalised = self._clahe.apply(lightness.astype(np.uint8)).astype(np.float32)
            lightness = (1 - contrast) * lightness + contrast * equalised
        if sharpen:
            blurred = cv2.GaussianBlur(lightness, (0, 0), sigmaX=1.2)
            lightness = lightness + sharpen * (lightness - blurred)
        lab[..., 0] = lightness
        lab[..., 1:] = 128 + (lab[..., 1:] - 128) * (1 + 0.5 * saturation)
        lab = np.clip(lab + 0.5, 0, 255).astype(np.uint8)
        return Output(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))
