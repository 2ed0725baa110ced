"""photocraft_common.guards: cheap checks of forms and photos before costly work (the pool that decodes
the photos: test_offload.py)."""

from __future__ import annotations

import asyncio
import io
import json

import pytest
from PIL import Image

from photocraft_common.guards import (
    MAX_OPERATION_CHARS,
    MAX_PARAMS_BYTES,
    MAX_PARAMS_DEPTH,
    Prober,
    check_form,
    clean,
    dimensions,
    nesting,
)
from photocraft_common.images import InvalidImage
from photocraft_common.problems import Problem


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (20, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def refused(call, *args) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args)
    return caught.value


@pytest.mark.parametrize(("text", "depth"), [
    ("{}", 1), ('{"a": [1, {"b": []}]}', 4), ('{"a": "[[[[{{{{"}', 1), ('{"a": "\\"[[["}', 1),
    ("[" * 100_000, 100_000), ("]]]", 0), ("", 0), ("not json at all", 0),
])
def test_nesting_counts_brackets_outside_strings(text, depth):
    assert nesting(text) == depth


def test_params_within_the_limits_pass():
    check_form("remove-background", None)
    check_form("enhance", json.dumps({"scale": 2, "deep": [[[]]], "prompt": "x" * 1000}))
    check_form("enhance", "[" * MAX_PARAMS_DEPTH + "]" * MAX_PARAMS_DEPTH)


def test_deep_params_are_refused_before_parsing():
    problem = refused(check_form, "enhance", "[" * 30_000 + "]" * 30_000)
    assert (problem.status, problem.slug) == (422, "params-too-deep")
    assert "30000 levels" in problem.detail


@pytest.mark.parametrize("params", ["x" * (MAX_PARAMS_BYTES + 1), '{"p": "' + "é" * (MAX_PARAMS_BYTES // 2) + '"}'])
def test_large_params_are_refused_by_their_utf8_size(params):
    problem = refused(check_form, "enhance", params)
    assert (problem.status, problem.slug) == (413, "field-too-large")


def test_a_long_operation_name_is_not_echoed():
    problem = refused(check_form, "x" * (MAX_OPERATION_CHARS + 1), None)
    assert (problem.status, problem.slug) == (422, "unknown-operation") and "xxx" not in problem.detail


def test_clean_takes_out_reprs_control_characters_and_length():
    assert clean("cannot identify image file <_io.BytesIO object at 0x7f3a2c1b0>") == \
        "cannot identify image file the data"
    assert clean("Expected UploadFile, received: <class 'str'>") == "Expected UploadFile, received: str"
    assert clean("<class 'starlette.datastructures.UploadFile'>") == "UploadFile"
    assert clean("a\x00b\nc\u202ed") == "abcd"
    assert len(clean("y" * 5000, 300)) == 300


def test_dimensions_read_the_header_only():
    assert dimensions(png(40, 30)) == (40, 30)
    with pytest.raises(InvalidImage, match="not recognised") as caught:
        dimensions(b"GIF89a nonsense" * 3)
    assert "0x" not in str(caught.value)


def check(prober: Prober, photos: list[tuple[str, bytes]], limit_mp: float = 50):
    return asyncio.run(prober.check(photos, "enhance", limit_mp))


def check_refused(prober: Prober, photos: list[tuple[str, bytes]], limit_mp: float = 50) -> Problem:
    with pytest.raises(Problem) as caught:
        check(prober, photos, limit_mp)
    return caught.value


def test_photos_within_the_budgets_are_probed():
    infos = check(Prober(max_pixels=10_000, batch_pixels=20_000), [("a", png(100, 100)), ("b", png(50, 100))])
    assert [(i.width, i.height, i.mime_type) for i in infos] == [(100, 100, "image/png"), (50, 100, "image/png")]


def test_budgets_are_checked_from_the_headers():
    prober = Prober(max_pixels=10_000, batch_pixels=15_000)
    over_photo = check_refused(prober, [("big.png", png(101, 100))])
    over_batch = check_refused(prober, [("a", png(100, 100)), ("b", png(100, 100))])
    over_operation = check_refused(prober, [("a", png(100, 100))], limit_mp=0.005)
    assert (over_photo.status, over_photo.slug) == (415, "unsupported-image")
    assert "big.png: 101x100" in over_photo.detail
    assert (over_batch.status, over_batch.slug) == (413, "too-many-pixels") and "20,000 pixels" in over_batch.detail
    assert (over_operation.status, over_operation.slug) == (422, "image-too-large")


def test_a_batch_over_its_budget_is_refused_before_any_photo_is_decoded():
    whole = png(100, 100)
    cut = whole[: len(whole) - 30]  # its header says 100x100; decoding it would fail (415)
    problem = check_refused(Prober(max_pixels=10_000, batch_pixels=15_000), [("a", whole), ("b", cut)])
    assert (problem.status, problem.slug) == (413, "too-many-pixels")


def test_a_corrupt_photo_names_itself_without_internals():
    whole = png(64, 64)
    problem = check_refused(Prober(max_pixels=10_000), [("ok", png(8, 8)), ("cut.png", whole[: len(whole) - 30])])
    assert (problem.status, problem.slug) == (415, "unsupported-image")
    assert problem.detail.startswith("cut.png: ") and " at 0x" not in problem.detail


def test_budgets_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        Prober(max_pixels=0)
    with pytest.raises(ValueError, match="positive"):
        Prober(max_pixels=10, workers=0)
