"""Tiled processing gives what processing the whole image gives, for a model that sees no further
than the overlap: a 5x5 box blur followed by x2 pixel replication stands in for one."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage import data

from photocraft_inference.tiling import parse, run_tiled


def local_model(image: np.ndarray) -> np.ndarray:
    blurred = ndimage.uniform_filter(image.astype(np.float32), size=(5, 5, 1), mode="mirror")
    return np.repeat(np.repeat(blurred, 2, axis=0), 2, axis=1)


@pytest.mark.parametrize("shape", [(300, 410), (64, 700), (256, 256), (97, 97)])
async def test_tiles_stitch_into_the_whole_images_result(shape):
    image = data.astronaut()[:shape[0], :shape[1]]
    calls = []

    async def process(window: np.ndarray) -> np.ndarray:
        calls.append(window.shape)
        return local_model(window)

    tiled = await run_tiled(image, tile=96, overlap=8, process=process)
    whole = local_model(image)
    assert tiled.shape == whole.shape
    assert len(set(calls)) == 1, "every window has one size, so Triton can batch them"
    (window_h, window_w, _), = set(calls)
    assert window_h <= 96 and window_w <= 96
    height, width = image.shape[:2]
    assert len(calls) == math.ceil(height / 80) * math.ceil(width / 80)  # as few as 96-pixel windows allow
    # Little is computed beyond the image: under one pixel per window and axis, besides the overlaps.
    assert (window_h - 16) * math.ceil(height / 80) < height + math.ceil(height / 80)
    assert (window_w - 16) * math.ceil(width / 80) < width + math.ceil(width / 80)
    # Away from the image's own border (where mirroring of the image and of a window differ
    # only in which mirror), tiled and whole agree to rounding.
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(tiled[inner] - whole[inner]).max() < 1e-3


def test_tiling_spec_is_checked():
    assert parse("256,16") == (256, 16)
    with pytest.raises(ValueError):
        parse("64,32")
