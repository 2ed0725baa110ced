"""degrade.old_print: the quality benchmark's combined degradation."""

import numpy as np
import pytest
from photocraft_models import degrade
from skimage import data


@pytest.fixture(scope="module")
def coffee() -> np.ndarray:
    return data.coffee()[:200, :300]


@pytest.mark.parametrize("look", degrade.LOOKS)
def test_old_print_is_deterministic_and_marks_each_kind(coffee: np.ndarray, look: str) -> None:
    first, masks = degrade.old_print(coffee, np.random.default_rng(3), look=look)
    again, masks_again = degrade.old_print(coffee, np.random.default_rng(3), look=look)
    assert first.shape == coffee.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert set(masks) == {"scratches", "dust", "tears"}
    for kind, mask in masks.items():
        assert mask.shape == coffee.shape[:2] and mask.dtype == bool
        assert mask.any(), kind
        assert np.array_equal(mask, masks_again[kind])
    # the same print undamaged (the grain is drawn first, so it is the same): the masks hold what the damage changed
    undamaged, _ = degrade.old_print(coffee, np.random.default_rng(3), look=look, counts=(0, 0, 0))
    error = np.abs(first.astype(float) - undamaged).mean(axis=2)
    union = np.logical_or.reduce(list(masks.values()))
    assert error[union].mean() > 30 > 5 * error[~union].mean()


def test_old_print_toned_is_monochrome_and_faded_is_not(coffee: np.ndarray) -> None:
    sepia, _ = degrade.old_print(coffee, np.random.default_rng(4), look="sepia", counts=(0, 0, 0))
    faded, _ = degrade.old_print(coffee, np.random.default_rng(4), look="faded", counts=(0, 0, 0))
    assert np.std(sepia[..., 0].astype(float) - sepia[..., 2]) < np.std(faded[..., 0].astype(float) - faded[..., 2])
    assert sepia[..., 0].mean() > sepia[..., 2].mean()  # warm


def test_old_print_refuses_an_unknown_look(coffee: np.ndarray) -> None:
    with pytest.raises(ValueError, match="look must be one of"):
        degrade.old_print(coffee, np.random.default_rng(0), look="daguerreotype")
