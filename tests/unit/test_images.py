"""Decoding uploads: formats, limits, EXIF orientation, metadata."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as samples

from photocraft_common.images import InvalidImage, decode_rgb, encode_png, probe


def encoded(pixels: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def rotated_jpeg() -> bytes:
    """A 60x40 (w x h) JPEG whose EXIF says: rotate 90° clockwise to display (orientation 6)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encoded(np.zeros((40, 60, 3), np.uint8), "JPEG", exif=exif.tobytes())


@pytest.mark.parametrize(("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"),
                                           ("WEBP", "image/webp"), ("TIFF", "image/tiff")])
def test_probe_identifies_accepted_formats(fmt, mime):
    info = probe(encoded(samples.astronaut()[:100, :150], fmt), max_pixels=10**6)
    assert (info.format, info.mime_type, info.width, info.height) == (fmt, mime, 150, 100)


def test_probe_swaps_sides_for_rotated_exif_orientation():
    info = probe(rotated_jpeg(), max_pixels=10**6)
    assert (info.width, info.height) == (40, 60)


@pytest.mark.parametrize("content", [b"", b"hello world", b"%PDF-1.7\n" + b"0" * 200])
def test_probe_rejects_what_is_not_an_image(content):
    with pytest.raises(InvalidImage, match="not a readable image"):
        probe(content, max_pixels=10**6)


def test_probe_rejects_a_truncated_image():
    whole = encoded(samples.astronaut(), "PNG")
    with pytest.raises(InvalidImage):
        probe(whole[: len(whole) // 2], max_pixels=10**6)


def test_probe_rejects_too_many_pixels_before_decoding():
    with pytest.raises(InvalidImage, match="MP"):
        probe(encoded(np.zeros((100, 101), np.uint8), "PNG"), max_pixels=100 * 100)


def test_probe_rejects_formats_not_accepted():
    with pytest.raises(InvalidImage, match="not accepted"):
        probe(encoded(np.zeros((8, 8, 3), np.uint8), "PPM"), max_pixels=10**6)


def test_decode_rgb_applies_exif_orientation_and_converts_grayscale():
    assert decode_rgb(rotated_jpeg()).shape == (60, 40, 3)
    gray = decode_rgb(encoded(samples.camera(), "PNG"))
    assert gray.shape == (512, 512, 3) and gray.dtype == np.uint8
    assert np.array_equal(gray[..., 0], samples.camera()) and np.array_equal(gray[..., 0], gray[..., 2])


def test_encode_png_round_trips_rgba_without_metadata():
    rgba = np.dstack([samples.astronaut(), np.full((512, 512), 7, np.uint8)])
    png = encode_png(rgba)
    image = Image.open(io.BytesIO(png))
    assert image.mode == "RGBA" and np.array_equal(np.asarray(image), rgba)
    assert not image.getexif() and "exif" not in image.info
