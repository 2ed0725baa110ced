"""The quality benchmark's restoration scoring (bench/quality_restore*.py), without the platform.

Here, not in tests/unit, because the benchmark runs in .venv-triton beside photocraft_models."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the bench scripts import each other

import quality_restore  # noqa: E402
import quality_restore_report  # noqa: E402


def test_a_detection_counts_within_2_px_and_not_beyond() -> None:
    truth = np.zeros((40, 40), bool)
    truth[20, 5:35] = True
    for shift, expected in ((0, 30), (2, 30), (3, 0)):
        detected = np.roll(truth, shift, axis=0)
        correct, found = quality_restore.hits(detected, truth)
        assert (correct, found) == (expected, expected), shift
    assert quality_restore.hits(np.zeros_like(truth), truth) == (0, 0)


def test_the_baseline_mask_finds_a_thin_bright_line_and_leaves_flat_gray_alone() -> None:
    image = np.full((60, 60, 3), 100, np.uint8)
    image[30, 10:50] = 220
    mask = quality_restore.hat_mask(image, 7, 50)
    assert mask[30, 10:50].all()
    assert not mask[:25].any() and not mask[36:].any()


def test_the_showcase_scratches_replayed_lie_where_the_demo_draws_them() -> None:
    before = np.asarray(Image.open(io.BytesIO(quality_restore.demo_old_print())).convert("RGB"))
    mask = quality_restore_report.showcase_scratches(before.shape)
    gray = quality_restore.luma(before)
    assert mask.sum() > 1000
    assert gray[mask].mean() > 200 > gray[~mask].mean() + 80


def test_the_print_analysis_is_read_from_the_report_and_only_from_there() -> None:
    report = {"schema": 1, "params": {"toning": "remove"},
              "analysis": {"print": {"monochrome": True, "toned": "sepia", "faded": False}, "faces": 0}}
    assert quality_restore_report.found([report])["toned"] == "sepia"
    assert quality_restore_report.found([{"schema": 1, "analysis": None}]) is None
    assert quality_restore_report.found([]) is None
