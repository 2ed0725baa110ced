"""Large images through a model in tiles: overlapping windows, run concurrently, stitched without seams.

The image is covered by windows of ``tile`` x ``tile`` pixels whose centres
(``tile - 2 * overlap`` wide) tile it exactly; beyond its edges it is
mirrored, so every window is full size (and Triton can batch them). Each
window's output keeps only its centre: a model that sees no further than
``overlap`` pixels (its receptive field) gives exactly what it gives on the
whole image, so there is no seam. A model's config declares its tiling as
parameter ``photocraft.tile``, ``"<tile>,<overlap>"`` in input pixels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np


def parse(spec: str) -> tuple[int, int]:
    tile, overlap = (int(v) for v in spec.split(","))
    if not 0 <= 2 * overlap < tile:
        raise ValueError(f"tiling {spec!r}: the overlap must be under half the tile")
    return tile, overlap


async def run_tiled(image: np.ndarray, tile: int, overlap: int,
                    process: Callable[[np.ndarray], Awaitable[np.ndarray]], concurrency: int = 8) -> np.ndarray:
    """``process`` every window of ``(H, W, C) uint8`` ``image``; returns the stitched output,
    ``(s*H, s*W, C')`` for a model that scales by the integer ``s``."""
    height, width = image.shape[:2]
    core = tile - 2 * overlap
    rows, cols = range(0, height, core), range(0, width, core)
    # Mirror beyond the edges so that every window, the last ones too, is whole.
    padded = np.pad(image, ((overlap, overlap + core), (overlap, overlap + core), (0, 0)), mode="reflect")
    gate = asyncio.Semaphore(concurrency)

    async def window(y: int, x: int) -> np.ndarray:
        async with gate:
            return await process(np.ascontiguousarray(padded[y:y + tile, x:x + tile]))

    outputs = await asyncio.gather(*(window(y, x) for y in rows for x in cols))
    scale = outputs[0].shape[0] // tile
    stitched = np.empty((height * scale, width * scale, outputs[0].shape[2]), outputs[0].dtype)
    for (y, x), out in zip(((y, x) for y in rows for x in cols), outputs, strict=True):
        centre = out[overlap * scale:(overlap + core) * scale, overlap * scale:(overlap + core) * scale]
        h, w = min(core, height - y) * scale, min(core, width - x) * scale
        stitched[y * scale:y * scale + h, x * scale:x * scale + w] = centre[:h, :w]
    return stitched
