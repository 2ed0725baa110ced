"""Tone and colour: print balance (toning, faded dyes, colour cast, levels), local contrast,
saturation and sharpness, on OpenCV.

Balance (the restore's ``balance`` stage; its strengths come from
photocraft_models.prints.balance_params), in this order:

- ``dyes``: each channel's optical density D = -log10(reflectance) is stretched so that its
  range between the paper (0.5th percentile of D) and its deepest shadow (99.5th) matches the
  least faded channel's, and the paper's density is removed: faded dyes regain their strength
  and the paper its white (a per-channel white patch, in density, where fading acts).
- ``neutralise``: the a and b of CIELAB scaled towards 0: a toned print becomes neutral gray,
  its lightness kept.
- ``cast``: the mean (a, b) of the darkest 2 % of pixels is subtracted in the shadows and that
  of the lightest 2 % in the highlights, linearly in L between them (black point and white
  patch; Land, "The Retinex Theory of Color Vision", Scientific American 1977).
- ``levels``: L stretched so that its 0.5th and 99.5th percentiles become 0 and 100.

Each is blended with its input by its strength 0..1. Then contrast: CLAHE (Zuiderveld,
"Contrast Limited Adaptive Histogram Equalization", Graphics Gems IV, 1994) on the L channel
of CIELAB, blended with the original L by ``contrast``. Saturation scales the a and b channels.
Sharpening is an unsharp mask on L only, so edges gain no colour fringes.
Every parameter at 0 returns the image unchanged.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .params import number
from .prints import extremes_cast
from .serving import Output

BALANCE = ("neutralise", "dyes", "cast", "levels")
PERCENTILES = (0.5, 99.5)  # of density (dyes) and of L (levels): ignore that many outliers at each end
SAMPLE_SIDE = 512  # px: percentiles and casts are measured on a copy this size on its long side


def _small(array: np.ndarray) -> np.ndarray:
    """``array`` (H, W, 3) as ``(N, 3)`` pixels of a copy at most 512 px on its long side (area-averaged)."""
    scale = SAMPLE_SIDE / max(array.shape[:2])
    if scale < 1:
        array = cv2.resize(array, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return array.reshape(-1, 3)


def _dyes(image: np.ndarray, strength: float) -> tuple[np.ndarray, list[float]]:
    """``dyes`` on ``(H, W, 3) uint8`` RGB: ``(H, W, 3) float32`` RGB 0..1 and each channel's
    density gain (the least faded channel's range over its own), applied as one table per channel."""
    levels = np.arange(256, dtype=np.float32)
    density = -np.log10((levels + 1) / 256)  # of each 8-bit value
    low, high = np.percentile(density[_small(image)], PERCENTILES, axis=0)
    spread = np.maximum(high - low, 0.05)
    gain = spread.max() / spread
    mixed = (1 - strength) * density[:, None] + strength * (density[:, None] - low) * gain  # (256, 3)
    table = np.clip((256 * 10 ** -mixed - 1) / 255, 0, 1).astype(np.float32)
    rgb = np.stack([table[image[..., c], c] for c in range(3)], axis=-1)
    return rgb, [round(float(g), 3) for g in gain]


def balance(image: np.ndarray, neutralise: float, dyes: float, cast: float, levels: float) -> tuple[np.ndarray, dict]:
    """The balance of the module on ``(H, W, 3) uint8`` RGB with strengths 0..1; returns
    ``(H, W, 3) float32`` CIELAB (L 0..100) and what was measured and done (JSON-ready)."""
    done: dict = {}
    if dyes:
        rgb, done["dye_gain"] = _dyes(image, dyes)
    else:
        rgb = image.astype(np.float32) / 255
    colour = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    if neutralise:
        colour[..., 1:] *= 1 - neutralise
    if cast:
        shadows, highlights = extremes_cast(_small(colour))
        weight = np.clip(colour[..., 0] * np.float32(cast / 100), 0, cast)  # cast x L / 100
        for channel, (dark, light) in enumerate(zip(shadows, highlights, strict=True), start=1):
            colour[..., channel] -= np.float32(cast * dark) + weight * np.float32(light - dark)
        done["cast_removed"] = {"shadows": [round(float(v), 1) for v in shadows],
                                "highlights": [round(float(v), 1) for v in highlights]}
    if levels:
        black, white = np.percentile(_small(colour)[:, 0], PERCENTILES)
        if white - black > 1:
            # (1 - levels) L + levels (L - black) 100 / (white - black), as one multiply-add
            gain = np.float32(1 - levels + levels * 100 / (white - black))
            colour[..., 0] = np.clip(colour[..., 0] * gain - np.float32(levels * black * 100 / (white - black)), 0, 100)
            done["levels"] = [round(float(black), 1), round(float(white), 1)]
    return colour, done


class Tone:
    """Filter. PARAMS ``neutralise``, ``dyes``, ``cast``, ``levels`` 0..1 (default 0; see the
    module), ``contrast`` 0..1 (default 0.4), ``saturation`` -1..1 (default 0.1), ``sharpen``
    0..1 (default 0.3). ``(H, W, 3) uint8`` RGB in and out; INFO ``{"balance": {...}}`` with
    what balance measured and did, when it ran. Raises InvalidInput for a parameter out of range."""

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        self._clahe = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8))

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        strengths = {name: number(params, name, 0.0, 0.0, 1.0) for name in BALANCE}
        contrast = number(params, "contrast", 0.4, 0.0, 1.0)
        saturation = number(params, "saturation", 0.1, -1.0, 1.0)
        sharpen = number(params, "sharpen", 0.3, 0.0, 1.0)
        if contrast == saturation == sharpen == 0 and not any(strengths.values()):
            return Output(image.copy())
        info = {}
        if any(strengths.values()):
            colour, info["balance"] = balance(image, **strengths)
        else:
            colour = cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
        lightness = colour[..., 0]
        if contrast:
            equalised = self._clahe.apply(np.clip(lightness * 2.55 + 0.5, 0, 255).astype(np.uint8)) / 2.55
            lightness = (1 - contrast) * lightness + contrast * equalised.astype(np.float32)
        if sharpen:
            blurred = cv2.GaussianBlur(lightness, (0, 0), sigmaX=1.2)
            lightness = lightness + sharpen * (lightness - blurred)
        colour[..., 0] = np.clip(lightness, 0, 100)
        colour[..., 1:] *= 1 + 0.5 * saturation
        rgb = cv2.cvtColor(colour, cv2.COLOR_LAB2RGB)
        return Output(np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8), info=info)
