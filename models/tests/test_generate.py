"""Text-to-image plumbing on a tiny Stable Diffusion pipeline with random weights."""

from __future__ import annotations

import numpy as np
import pytest
from photocraft_models.generate import TextToImage, tiny_random_pipeline
from photocraft_models.serving import InvalidInput


@pytest.fixture(scope="module")
def generate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sd")
    tiny_random_pipeline(directory)
    return TextToImage(directory, {})


def test_image_has_the_requested_size_and_every_step_is_reported(generate):
    steps = []
    image = generate({"prompt": "a cat", "steps": 3, "width": 96, "height": 64, "seed": 7},
                     lambda step, total: steps.append((step, total)))
    assert image.shape == (64, 96, 3) and image.dtype == np.uint8
    assert steps == [(1, 3), (2, 3), (3, 3)]


def test_same_seed_same_image(generate):
    params = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3}
    first = generate(params, lambda *_: None)
    again = generate(params, lambda *_: None)
    other = generate({**params, "seed": 4}, lambda *_: None)
    assert np.array_equal(first, again) and not np.array_equal(first, other)


@pytest.mark.parametrize("params", [
    {"prompt": ""}, {"prompt": "x", "width": 100}, {"prompt": "x", "width": 2048, "height": 1024},
    {"prompt": "x", "steps": 0}, {"prompt": 5},
])
def test_bad_parameters_are_refused(generate, params):
    with pytest.raises(InvalidInput):
        generate(params, lambda *_: None)
