"""Large images through a model in tiles: overlapping windows, run concurrently, stitched without seams.

The image is covered by windows of at most ``tile`` x ``tile`` pixels whose
centres tile it exactly: as few windows as fit, all of one size (so Triton
can batch them), their centres as equal as the image allows, so that little
is computed twice or beyond the image (with 256-pixel windows a 1000-pixel
side took 5 windows of 256, now 5 of 232). Beyond its edges the image is
mirrored. Each window's output keeps only its centre: a model that sees no
further than ``overlap`` pixels (its receptive field) gives exactly what it
gives on the whole image, so there is no seam. A model's config declares its
tiling as parameter ``photocraft.tile``, ``"<tile>,<overlap>"`` in input pixels.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable

import numpy as np


def parse(spec: str) -> tuple[int, int]:
    tile, overlap = (int(v) for v in spec.split(","))
    if not 0 <= 2 * overlap < tile:
        raise ValueError(f"tiling {spec!r}: the overlap must be under half the tile")
    return tile, overlap


def centres(length: int, tile: int, overlap: int) -> int:
    """The side of each window's centre along an axis of ``length`` pixels: the windows are as few as
    ``tile``-pixel windows allow, their centres ``length / n`` rounded up."""
    count = math.ceil(length / (tile - 2 * overlap))
    return math.ceil(length / count)


async def run_tiled(image: np.ndarray, tile: int, overlap: int,
                    process: Callable[[np.ndarray], Awaitable[np.ndarray]], concurrency: int = 8) -> np.ndarray:
    """``process`` every window of ``(H, W, C) uint8`` ``image``; returns the stitched output,
    ``(s*H, s*W, C')`` for a model that scales by the integer ``s``. Windows are
    ``(centres(H) + 2 * overlap, centres(W) + 2 * overlap)``, at most ``tile`` a side."""
    height, width = image.shape[:2]
    core_h, core_w = centres(height, tile, overlap), centres(width, tile, overlap)
    rows, cols = range(0, height, core_h), range(0, width, core_w)
    # Mirror beyond the edges so that every window, the last ones too, is whole.
    padded = np.pad(image, ((overlap, overlap + core_h), (overlap, overlap + core_w), (0, 0)), mode="reflect")
    gate = asyncio.Semaphore(concurrency)

    async def window(y: int, x: int) -> np.ndarray:
        async with gate:
            return await process(np.ascontiguousarray(padded[y:y + core_h + 2 * overlap, x:x + core_w + 2 * overlap]))

    outputs = await asyncio.gather(*(window(y, x) for y in rows for x in cols))
    scale = outputs[0].shape[0] // (core_h + 2 * overlap)
    stitched = np.empty((height * scale, width * scale, outputs[0].shape[2]), outputs[0].dtype)
    for (y, x), out in zip(((y, x) for y in rows for x in cols), outputs, strict=True):
        centre = out[overlap * scale:(overlap + core_h) * scale, overlap * scale:(overlap + core_w) * scale]
        h, w = min(core_h, height - y) * scale, min(core_w, width - x) * scale
        stitched[y * scale:y * scale + h, x * scale:x * scale + w] = centre[:h, :w]
    return stitched
