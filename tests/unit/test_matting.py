"""The finish of remove-background: mask to alpha, and the subject on its new background."""

from __future__ import annotations

import numpy as np
from skimage import data

from photocraft_inference.matting import cut_out

PHOTO = data.astronaut()[:240, :320]
MASK = np.zeros((60, 80), np.float32)
MASK[:, :40] = 1.0  # the left half is subject


def test_transparent_background_keeps_colours_and_puts_the_mask_in_alpha():
    rgba = cut_out(PHOTO, MASK, {"refine": False})
    assert rgba.shape == (240, 320, 4) and rgba.dtype == np.uint8
    assert np.array_equal(rgba[..., :3], PHOTO)
    assert (rgba[:, :150, 3] == 255).all() and (rgba[:, 170:, 3] == 0).all()


def test_refinement_keeps_alpha_in_range_and_the_subject_opaque():
    alpha = cut_out(PHOTO, MASK, {"refine": True})[..., 3]
    assert alpha[:, :100].mean() > 250 and alpha[:, 220:].mean() < 5


def test_solid_colour_background():
    rgb = cut_out(PHOTO, MASK, {"refine": False, "background": {"type": "color", "color": "#00ff00"}})
    assert rgb.shape == (240, 320, 3)
    assert np.array_equal(rgb[:, :150], PHOTO[:, :150])
    assert (rgb[:, 170:] == [0, 255, 0]).all()


def test_blurred_background_is_the_photo_blurred():
    rgb = cut_out(PHOTO, MASK, {"refine": False, "background": {"type": "blur", "radius": 30}})
    assert np.array_equal(rgb[:, :150], PHOTO[:, :150])
    background, original = rgb[:, 200:].astype(float), PHOTO[:, 200:].astype(float)
    assert abs(background.mean() - original.mean()) < 10  # same picture...
    assert np.abs(np.diff(background, axis=1)).mean() < 0.5 * np.abs(np.diff(original, axis=1)).mean()  # ...blurred
