"""Stage runners: the pre- and post-processing around each Triton model.

A runner takes the stage's input image as ``(H, W, 3) uint8 RGB`` and returns
the output image as a ``(H, W, C) uint8`` array. It reports progress through
``progress(fraction, message)`` with ``fraction`` in 0..1 of the stage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
from PIL import Image

from .triton import Triton

Progress = Callable[[float, str], Awaitable[None]]
Runner = Callable[[np.ndarray, Triton, Progress], Awaitable[np.ndarray]]

U2NET_SIZE = 320  # U²-Net-p's input side, pixels


def _resize_rgb(pixels: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(pixels).resize((side, side), Image.Resampling.LANCZOS))


def _alpha_from_mask(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(H, W, 4) uint8 RGBA``: the photo with ``mask`` (0..1) scaled up as its alpha."""
    height, width = pixels.shape[:2]
    full = Image.fromarray(mask.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BILINEAR)
    alpha = np.clip(np.asarray(full) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.dstack([pixels, alpha])


async def remove_background(pixels: np.ndarray, triton: Triton, progress: Progress) -> np.ndarray:
    """Cut out the salient subject with U²-Net-p: ``(H, W, 3)`` RGB in, ``(H, W, 4)`` RGBA out."""
    small = await asyncio.to_thread(_resize_rgb, pixels, U2NET_SIZE)
    mask = await triton.infer("u2netp", {"IMAGE": small[np.newaxis]}, "MASK")
    await progress(0.7, "mask predicted")
    return await asyncio.to_thread(_alpha_from_mask, pixels, mask[0])


RUNNERS: dict[str, Runner] = {"u2netp": remove_background}
