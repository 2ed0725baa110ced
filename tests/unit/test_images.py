"""Decoding uploads: formats (HEIC too), limits, EXIF orientation, ICC profiles, first frames, metadata."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage import data as samples

from photocraft_common.images import InvalidImage, decode, decode_rgb, encode, encode_png, probe

from .icc import display_p3_icc

HEIC = Path(__file__).parent / "data" / "heic"  # made by data/make_heic.py (pi-heif decodes only)


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


@pytest.mark.parametrize("pixels", [samples.astronaut(), samples.camera(),
                                    np.dstack([samples.astronaut(), samples.camera()])], ids=["rgb", "gray", "rgba"])
def test_png_results_and_intermediates_read_back_as_the_same_pixels(pixels):
    result, intermediate = encode(pixels, "png"), encode(pixels, "png", intermediate=True)
    for png in (result, intermediate):
        image = Image.open(io.BytesIO(png))
        assert np.array_equal(np.asarray(image), pixels) and not image.getexif() and "exif" not in image.info
    # A result is compressed to within 25 % of zlib level 6; an intermediate is stored (the pixels plus framing).
    assert len(result) <= 1.25 * len(encoded(pixels, "PNG", compress_level=6))
    assert pixels.nbytes < len(intermediate) < 1.01 * pixels.nbytes + 1024


# ---- mobile photos: HEIC/HEIF, ICC profiles, first frames ---------------------------------------------------

def to_srgb_reference(pixels: np.ndarray, icc: bytes) -> np.ndarray:
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    srgb = ImageCms.createProfile("sRGB")
    return np.asarray(ImageCms.profileToProfile(Image.fromarray(pixels), source, srgb,
                                                renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"))


def test_probe_and_decode_accept_heic():
    pixels = samples.astronaut()[:96, :128]
    heic = (HEIC / "astronaut-128x96-q95.heic").read_bytes()
    info = probe(heic, max_pixels=10**6)
    assert (info.format, info.mime_type, info.extension) == ("HEIF", "image/heic", "heic")
    assert (info.width, info.height, info.frames, info.warnings) == (128, 96, 1, ())
    decoded = decode(heic)
    assert decoded.rgb.shape == (96, 128, 3) and decoded.rgb.dtype == np.uint8 and decoded.alpha is None
    assert np.abs(decoded.rgb.astype(int) - pixels).mean() < 6  # lossy HEVC, yet the same picture


def test_heic_rotation_is_applied_once():
    """pi-heif applies the HEIF rotation and resets the EXIF orientation, so nothing turns it twice."""
    heic = (HEIC / "black-60x40-orientation-6.heic").read_bytes()  # EXIF orientation 6, as a HEIF rotation
    assert (probe(heic, max_pixels=10**6).width, probe(heic, max_pixels=10**6).height) == (40, 60)
    assert decode(heic).rgb.shape == (60, 40, 3)


def test_probe_checks_heic_pixels_before_decoding():
    with pytest.raises(InvalidImage, match="MP"):
        probe((HEIC / "black-64x64.heic").read_bytes(), max_pixels=64 * 63)


def test_display_p3_photo_is_converted_to_srgb():
    icc = display_p3_icc()
    pixels = samples.astronaut()[:64, :64].copy()
    pixels[0, 0] = (234, 51, 35)  # sRGB's pure red, written in Display P3
    png = encoded(pixels, "PNG", icc_profile=icc)

    decoded = decode(png)

    assert np.abs(decoded.rgb.astype(int) - pixels).max() > 10  # the colours did change...
    assert np.abs(decoded.rgb.astype(int) - to_srgb_reference(pixels, icc)).max() <= 1  # ...as LittleCMS says
    assert np.abs(decoded.rgb[0, 0].astype(int) - (255, 0, 0)).max() <= 3  # and as the P3 primaries say
    assert decoded.warnings == ("colours converted from the embedded ICC profile 'Display P3' to sRGB",)
    assert probe(png, max_pixels=10**6).warnings == decoded.warnings


def test_display_p3_heic_keeps_its_colour():
    icc = display_p3_icc()
    heic = (HEIC / "display-p3-96x64-q95.heic").read_bytes()  # a saturated green corner, where P3 and sRGB differ most
    with Image.open(io.BytesIO(heic)) as image:  # what libheif decodes, still in Display P3
        raw = np.asarray(image.convert("RGB"))
        assert image.info["icc_profile"] == icc
    decoded = decode(heic)
    assert np.abs(decoded.rgb.astype(int) - to_srgb_reference(raw, icc)).max() <= 1
    assert np.abs(decoded.rgb.astype(int) - raw).max() > 10
    assert "Display P3" in decoded.warnings[0]


def test_heic_in_an_nclx_colour_space_other_than_srgb_says_it_is_not_converted():
    heic = (HEIC / "nclx-display-p3-32x32.heic").read_bytes()  # primaries 12, transfer 13, matrix 6
    expected = ("the colour space (nclx primaries 12, transfer 13) is not converted to sRGB; colours may shift",)
    assert decode(heic).warnings == expected and probe(heic, max_pixels=10**6).warnings == expected
    assert decode((HEIC / "gray-32x32.heic").read_bytes()).warnings == ()  # BT.709 primaries, sRGB


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_srgb_tagged_and_untagged_images_are_unchanged(fmt):
    pixels = samples.astronaut()[:64, :64]
    for options in ({}, {"icc_profile": ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()}):
        data = encoded(pixels, fmt, **options)
        with Image.open(io.BytesIO(data)) as image:
            assert image.info.get("icc_profile") == options.get("icc_profile")
            raw = np.asarray(image.convert("RGB"))
        decoded = decode(data)
        assert np.array_equal(decoded.rgb, raw) and decoded.warnings == ()
        assert probe(data, max_pixels=10**6).warnings == ()


@pytest.mark.parametrize(("icc", "warning"), [
    (b"not an ICC profile at all" * 8, "cannot be read; colours taken as sRGB"),
    (ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes(), "is for Lab colours, not RGB pixels"),
])
def test_a_profile_that_cannot_be_used_is_ignored_with_a_warning(icc, warning):
    pixels = samples.astronaut()[:32, :32]
    decoded = decode(encoded(pixels, "PNG", icc_profile=icc))
    assert np.array_equal(decoded.rgb, pixels)
    assert len(decoded.warnings) == 1 and warning in decoded.warnings[0]


def frames_of(colours: list[tuple[int, int, int]]) -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), colour) for colour in colours]


@pytest.mark.parametrize(("fmt", "options", "warning"), [
    ("GIF", {"duration": 100, "loop": 0}, "animated GIF of 3 frames: only the first frame is processed"),
    ("WEBP", {"duration": 100, "lossless": True}, "animated WEBP of 3 frames: only the first frame is processed"),
    ("PNG", {"duration": 100}, "animated PNG of 3 frames: only the first frame is processed"),
    ("TIFF", {}, "multi-page TIFF of 3 pages: only the first page is processed"),
    ("HEIF", None, "HEIF file of 3 images: only the primary image is processed"),  # data/heic/red-green-blue-40x30
    ("MPO", {"quality": 95}, "JPEG (MPO) of 3 pictures: only the first picture is processed"),
])
def test_animated_and_multi_page_files_give_their_first_frame_and_say_so(fmt, options, warning):
    first, *rest = frames_of([(200, 30, 30), (30, 200, 30), (30, 30, 200)])
    buffer = io.BytesIO((HEIC / "red-green-blue-40x30.heic").read_bytes()) if options is None else io.BytesIO()
    if options is not None:
        first.save(buffer, format=fmt, save_all=True, append_images=rest, **options)

    info = probe(buffer.getvalue(), max_pixels=10**6)
    decoded = decode(buffer.getvalue())

    assert (info.width, info.height, info.frames, info.warnings) == (40, 30, 3, (warning,))
    assert decoded.rgb.shape == (30, 40, 3) and decoded.warnings == (warning,)
    assert np.abs(decoded.rgb.reshape(-1, 3).mean(0) - (200, 30, 30)).max() < 8  # the first frame's red


def test_a_single_frame_gif_carries_no_warning():
    buffer = io.BytesIO()
    frames_of([(200, 30, 30)])[0].save(buffer, format="GIF")
    assert probe(buffer.getvalue(), max_pixels=10**6).warnings == () and decode(buffer.getvalue()).warnings == ()
