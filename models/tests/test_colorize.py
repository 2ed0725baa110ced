"""Colorization plumbing on a checkpoint of the real architecture with random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from photocraft_models.colorize import ECCV16, Colorize, random_checkpoint
from skimage import color, data


@pytest.fixture(scope="module")
def colorize(tmp_path_factory):
    directory = tmp_path_factory.mktemp("colorize")
    random_checkpoint(directory)
    return Colorize(directory, {})


def test_network_parameter_names_match_the_released_checkpoint_layout():
    names = set(ECCV16().state_dict())
    # Names of the authors' release (richzhang/colorization): conv, ReLU, ..., batch norm.
    assert {"model1.0.weight", "model1.2.weight", "model1.4.running_mean", "model3.6.weight",
            "model5.0.weight", "model8.0.weight", "model8.6.weight", "model_out.weight"} <= names
    assert "model_out.bias" not in names and "model8.7.weight" not in names
    assert sum(p.numel() for p in ECCV16().parameters()) == pytest.approx(32.2e6, rel=0.01)


def test_network_output_shape():
    with torch.inference_mode():
        ab = ECCV16().eval()(torch.full((1, 1, 256, 256), 50.0))
    assert ab.shape == (1, 2, 256, 256)


def test_output_keeps_size_and_the_lightness_of_the_input(colorize):
    gray = np.stack([data.camera()[:300, :400]] * 3, axis=2)
    out = colorize(gray, {}).image
    assert out.shape == (300, 400, 3) and out.dtype == np.uint8
    lightness_in = color.rgb2lab(gray)[..., 0]
    lightness_out = color.rgb2lab(out)[..., 0]
    # ab changes can push colours out of gamut, which moves L a little; detail must survive.
    assert np.corrcoef(lightness_in.ravel(), lightness_out.ravel())[0, 1] > 0.95
