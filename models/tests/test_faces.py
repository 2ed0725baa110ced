"""GFPGAN face restoration plumbing, on a checkpoint of its architecture with random weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from photocraft_models.faces import TEMPLATE, Gfpgan, five_points, random_checkpoint
from skimage import data


@pytest.fixture(scope="module")
def gfpgan(tmp_path_factory):
    directory = tmp_path_factory.mktemp("gfpgan")
    random_checkpoint(directory)
    return Gfpgan(directory, {})


def test_five_points_follow_the_template_order(gfpgan):
    (landmarks,) = gfpgan.faces(data.astronaut())
    points = five_points(landmarks)
    assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left before right
    assert points[:2, 1].max() < points[2, 1] < points[3:, 1].min()  # eyes, then nose, then mouth
    matrix, _ = cv2.estimateAffinePartial2D(points, TEMPLATE)
    mapped = points @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - TEMPLATE).max() < 25  # pixels of the 512x512 template: a good fit


def test_only_the_face_region_changes(gfpgan):
    photo = data.astronaut()
    out = gfpgan(photo, {"strength": 1.0})
    assert out.image.shape == photo.shape and out.info["faces"] == 1
    changed = np.any(out.image != photo, axis=2)
    assert changed.any() and not (changed & (out.mask == 0)).any()
    assert (out.mask > 0).mean() < 0.2 and (out.mask[100:170, 190:250] > 0).all()


def test_strength_zero_and_no_face_leave_the_image_alone(gfpgan):
    coffee = data.coffee()[:200, :300]
    assert np.array_equal(gfpgan(coffee, {}).image, coffee)
    assert gfpgan(coffee, {}).info["warnings"]
    photo = data.astronaut()
    assert np.array_equal(gfpgan(photo, {"strength": 0.0}).image, photo)
