"""Retouch on real photos from skimage.data, with the real MediaPipe face mesh."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from photocraft_models.retouch import Retouch
from photocraft_models.serving import InvalidInput
from skimage import data
from skimage.color import rgb2lab

ONLY = {
    "skin": {"skin": 1.0, "teeth": 0.0, "eyes": 0.0},
    "teeth": {"skin": 0.0, "teeth": 1.0, "eyes": 0.0},
    "eyes": {"skin": 0.0, "teeth": 0.0, "eyes": 1.0},
}


@pytest.fixture(scope="module")
def retouch() -> Retouch:
    return Retouch(Path("."), {})


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def landmarks(retouch, astronaut) -> np.ndarray:
    (points,) = retouch.faces(astronaut)
    return points


def changed(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    return np.any(before != after, axis=-1)


def assert_only_masked_changes(before: np.ndarray, result) -> None:
    assert result.image.shape == before.shape and result.image.dtype == np.uint8
    assert result.mask.shape == before.shape[:2] and result.mask.dtype == np.uint8
    assert set(np.unique(result.mask)) <= {0, 255}
    outside = result.mask == 0
    assert np.array_equal(result.image[outside], before[outside])


def test_astronaut_has_one_face_retouched_inside_the_mask(retouch, astronaut):
    result = retouch(astronaut, {})
    assert result.info == {"faces": 1, "warnings": []}
    assert_only_masked_changes(astronaut, result)
    diff = changed(astronaut, result.image)
    assert diff.sum() > 2000
    assert (result.mask > 0).mean() < 0.25
    # Landmarks put the face at rows 72-177, columns 179-270: this box is certainly face.
    assert (result.mask[90:170, 190:260] > 0).mean() > 0.95
    assert not diff[:40].any() and not diff[220:].any() and not diff[:, :150].any() and not diff[:, 300:].any()


def test_landmarks_are_on_the_face(landmarks):
    assert landmarks.shape == (478, 2) and landmarks.dtype == np.float32
    (x0, y0), (x1, y1) = landmarks.min(0), landmarks.max(0)
    assert 165 < x0 < 195 and 255 < x1 < 285 and 55 < y0 < 85 and 165 < y1 < 195


def test_two_faces_side_by_side(retouch, astronaut):
    pair = np.hstack([astronaut, astronaut])
    result = retouch(pair, {})
    assert result.info == {"faces": 2, "warnings": []}
    assert_only_masked_changes(pair, result)
    diff = changed(pair, result.image)
    assert diff[90:170, 190:260].sum() > 1000 and diff[90:170, 702:772].sum() > 1000


def test_no_face_leaves_the_image_unchanged(retouch):
    coffee = data.coffee()
    result = retouch(coffee, {"skin": 1.0, "teeth": 1.0, "eyes": 1.0})
    assert result.info == {"faces": 0, "warnings": ["no face found"]}
    assert np.array_equal(result.image, coffee) and result.image is not coffee
    assert not result.mask.any()


def test_zero_strengths_leave_the_image_unchanged(retouch, astronaut):
    result = retouch(astronaut, {"skin": 0, "teeth": 0, "eyes": 0})
    assert result.info["faces"] == 1
    assert np.array_equal(result.image, astronaut)


def test_teeth_change_only_inside_the_mouth(retouch, astronaut, landmarks):
    result = retouch(astronaut, ONLY["teeth"])
    assert_only_masked_changes(astronaut, result)
    diff = changed(astronaut, result.image)
    assert diff.sum() > 100 and (result.mask > 0).sum() < 0.005 * diff.size
    # Box of the inner lip contour: corners 78 and 308, midpoints 13 (upper) and 14 (lower).
    mouth = landmarks[[78, 308, 13, 14]]
    (x0, y0), (x1, y1) = np.floor(mouth.min(0)) - 1, np.ceil(mouth.max(0)) + 1
    rows, cols = np.nonzero(diff)
    assert rows.min() >= y0 and rows.max() <= y1 and cols.min() >= x0 and cols.max() <= x1
    before, after = rgb2lab(astronaut[diff]), rgb2lab(result.image[diff])
    assert after[:, 2].mean() < before[:, 2].mean() - 3  # less yellow (b*)
    assert after[:, 0].mean() > before[:, 0].mean()  # lighter (L*)


def test_eyes_change_only_near_the_irises(retouch, astronaut, landmarks):
    result = retouch(astronaut, ONLY["eyes"])
    assert_only_masked_changes(astronaut, result)
    diff = changed(astronaut, result.image)
    assert diff.sum() > 50 and (result.mask > 0).sum() < 0.005 * diff.size
    # Iris centres 468 and 473; 469 lies on the first iris's rim.
    radius = np.linalg.norm(landmarks[469] - landmarks[468])
    rows, cols = np.nonzero(diff)
    pixels = np.stack([cols, rows], axis=1)
    distance = np.min([np.linalg.norm(pixels - landmarks[i], axis=1) for i in (468, 473)], axis=0)
    assert distance.max() < 1.5 * radius + 2


def test_skin_smooths_the_face_but_not_the_mouth(retouch, astronaut, landmarks):
    strong = retouch(astronaut, ONLY["skin"])
    weak = retouch(astronaut, {**ONLY["skin"], "skin": 0.2})
    assert_only_masked_changes(astronaut, strong)
    diff = np.abs(strong.image.astype(int) - astronaut).max(axis=-1)
    cheek = diff[120:135, 190:205]
    assert cheek.mean() > 1.5
    assert np.abs(weak.image.astype(int) - astronaut).max(axis=-1)[120:135, 190:205].mean() < cheek.mean()
    mouth = landmarks[[78, 308, 13, 14]].round().astype(int)
    assert diff[mouth[2, 1] + 2:mouth[3, 1] - 1, mouth[0, 0] + 5:mouth[1, 0] - 5].max() <= 1


@pytest.mark.parametrize("params", [{"skin": 2}, {"teeth": "a lot"}, {"eyes": -0.1}, {"eyes": True}])
def test_invalid_params_are_rejected(retouch, astronaut, params):
    with pytest.raises(InvalidInput):
        retouch(astronaut, params)


def test_non_rgb_image_is_rejected(retouch, astronaut):
    with pytest.raises(InvalidInput):
        retouch(astronaut[..., 0], {})


def test_a_512_photo_takes_well_under_a_second(retouch, astronaut):
    retouch(astronaut, {})
    start = time.perf_counter()
    retouch(astronaut, {})
    assert time.perf_counter() - start < 0.5
