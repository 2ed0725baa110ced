"""The remove-background stage around the model, with an in-memory stand-in for Triton.

Plumbing only: the real model runs in tests/platform.
"""

from __future__ import annotations

import numpy as np
from skimage import data as samples

from photocraft_inference.stages import U2NET_SIZE, remove_background


class FakeTriton:
    """Answers u2netp with a mask that is 1 on the left half of the picture."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict, str]] = []

    async def infer(self, model: str, inputs: dict, output: str) -> np.ndarray:
        self.calls.append((model, inputs, output))
        mask = np.zeros((1, U2NET_SIZE, U2NET_SIZE), np.float32)
        mask[:, :, : U2NET_SIZE // 2] = 1.0
        return mask


async def test_mask_becomes_full_size_alpha_and_colours_pass_through():
    photo = samples.astronaut()[:300, :400]  # not square: the mask is stretched back
    triton, reports = FakeTriton(), []

    async def progress(fraction: float, message: str) -> None:
        reports.append(fraction)

    rgba = await remove_background(photo, triton, progress)

    ((model, inputs, output),) = triton.calls
    assert (model, output) == ("u2netp", "MASK")
    assert inputs["IMAGE"].shape == (1, 320, 320, 3) and inputs["IMAGE"].dtype == np.uint8
    assert rgba.shape == (300, 400, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., :3], photo)
    assert (rgba[:, :190, 3] == 255).all() and (rgba[:, 210:, 3] == 0).all()
    assert reports and all(0 < f < 1 for f in reports)
