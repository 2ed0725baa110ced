"""photocraft_common.no_ops: the parameters at which a model leaves a photo as it is."""

from __future__ import annotations

import pytest

from photocraft_common.no_ops import leaves_unchanged

ZEROS = {"contrast": 0, "saturation": 0, "sharpen": 0}


@pytest.mark.parametrize(("model", "params", "expected"), [
    ("tone", ZEROS, True),
    ("tone", {**ZEROS, "levels": 0.0, "quality": 90}, True),  # a balance strength at 0; the output quality
    ("tone", {**ZEROS, "cast": 0.4}, False),
    ("tone", {"contrast": 0, "saturation": 0}, False),  # sharpen not sent: its default (0.3) applies
    ("tone", {**ZEROS, "sharpen": 0.1}, False),
    ("retouch", {"skin": 0, "teeth": 0, "eyes": 0}, True),
    ("oidn", {"strength": 0}, False),  # a model not listed is never taken for a no-op
])
def test_leaves_unchanged(model, params, expected):
    assert leaves_unchanged(model, params) is expected
