"""The finish of remove-background: mask to alpha, and the subject on its new background."""

from __future__ import annotations

import cv2
import numpy as np
from skimage import data

from photocraft_inference.matting import GUIDE_SIDE, cut_out, full_size_alpha

PHOTO = data.astronaut()[:240, :320]
MASK = np.zeros((60, 80), np.float32)
MASK[:, :40] = 1.0  # the left half is subject


def test_transparent_background_keeps_visible_colours_and_puts_the_mask_in_alpha():
    rgba = cut_out(PHOTO, MASK, {"refine": False})
    assert rgba.shape == (240, 320, 4) and rgba.dtype == np.uint8
    assert (rgba[:, :150, 3] == 255).all() and (rgba[:, 170:, 3] == 0).all()
    visible = rgba[..., 3] > 0
    assert np.array_equal(rgba[..., :3][visible], PHOTO[visible])
    assert (rgba[..., :3][~visible] == 0).all()  # no colour kept where nothing shows


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


def test_refinement_at_the_working_size_follows_the_full_size_filter():
    """A 1024x1024 photo is refined on its 640-pixel version (GUIDE_SIDE); thresholded at 0.5 the alpha
    is the one the guided filter gives at full size, to an IoU of 0.98 (bench/results/worker_path.md)."""
    photo = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    mask = np.zeros((320, 320), np.float32)
    cv2.circle(mask, (160, 130), 90, 1.0, -1)  # a blob over the astronaut's head and shoulders
    alpha = full_size_alpha(mask, 1024, 1024, True, photo)
    assert alpha.shape == (1024, 1024) and alpha.dtype == np.float32 and 0 <= alpha.min() <= alpha.max() <= 1
    full = cv2.ximgproc.guidedFilter(photo.astype(np.float32) / 255, cv2.resize(mask, (1024, 1024)), 6, 1e-4)
    ours, theirs = alpha >= 0.5, full >= 0.5
    assert (ours & theirs).sum() / (ours | theirs).sum() > 0.98
    assert GUIDE_SIDE < 1024  # so that the working size was used
    plain = full_size_alpha(mask, 1024, 1024, False, photo)
    assert np.abs(alpha - plain).max() > 0.2  # and the edges did move to the photo's
