"""Decoding uploads: formats (HEIC too), limits, EXIF orientation, ICC profiles, first frames, metadata."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms
from skimage import data as samples

from photocraft_common.images import InvalidImage, decode, decode_rgb, encode, encode_png, probe


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

def s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def display_p3_icc() -> bytes:
    """An ICC v4 matrix/TRC profile of Display P3 (P3 primaries, D65 white, sRGB curve), built from the
    published chromaticities: Pillow cannot make one and none ships with the venv. Primaries are adapted
    to the D50 connection space with the Bradford matrix, as ICC.1:2022 Annex E describes."""
    xy = np.array([[0.680, 0.320], [0.265, 0.690], [0.150, 0.060]])
    white = np.array([0.3127 / 0.3290, 1.0, (1 - 0.3127 - 0.3290) / 0.3290])
    primaries = np.column_stack([xy[:, 0] / xy[:, 1], np.ones(3), (1 - xy.sum(1)) / xy[:, 1]])  # XYZ, Y = 1
    to_xyz = primaries.T * np.linalg.solve(primaries.T, white)  # columns: XYZ of R, G, B at full intensity
    bradford = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])
    d50 = np.array([0.9642, 1.0, 0.8249])
    adapt = np.linalg.inv(bradford) @ np.diag((bradford @ d50) / (bradford @ white)) @ bradford
    colorants = (adapt @ to_xyz).T

    def xyz(v) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    curve = b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(
        s15(v) for v in (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045))
    name = "Display P3".encode("utf-16-be")
    desc = b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(name), 28) + name
    tags = [(b"desc", desc), (b"wtpt", xyz(d50)), (b"rXYZ", xyz(colorants[0])), (b"gXYZ", xyz(colorants[1])),
            (b"bXYZ", xyz(colorants[2])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset, table, body = 128 + 4 + 12 * len(tags), b"", b""
    for signature, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (struct.pack(">I4sI", size, b"", 0x04300000) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
              + bytes(28) + s15(d50[0]) + s15(d50[1]) + s15(d50[2]) + bytes(48))
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


def to_srgb_reference(pixels: np.ndarray, icc: bytes) -> np.ndarray:
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    srgb = ImageCms.createProfile("sRGB")
    return np.asarray(ImageCms.profileToProfile(Image.fromarray(pixels), source, srgb,
                                                renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"))


def test_probe_and_decode_accept_heic():
    pixels = samples.astronaut()[:96, :128]
    heic = encoded(pixels, "HEIF", quality=95)
    info = probe(heic, max_pixels=10**6)
    assert (info.format, info.mime_type, info.extension) == ("HEIF", "image/heic", "heic")
    assert (info.width, info.height, info.frames, info.warnings) == (128, 96, 1, ())
    decoded = decode(heic)
    assert decoded.rgb.shape == (96, 128, 3) and decoded.rgb.dtype == np.uint8 and decoded.alpha is None
    assert np.abs(decoded.rgb.astype(int) - pixels).mean() < 6  # lossy HEVC, yet the same picture


def test_heic_rotation_is_applied_once():
    """pillow-heif applies the HEIF rotation and resets the EXIF orientation, so nothing turns it twice."""
    exif = Image.Exif()
    exif[0x0112] = 6  # pillow-heif writes it as the HEIF rotation
    heic = encoded(np.zeros((40, 60, 3), np.uint8), "HEIF", exif=exif.tobytes())
    assert (probe(heic, max_pixels=10**6).width, probe(heic, max_pixels=10**6).height) == (40, 60)
    assert decode(heic).rgb.shape == (60, 40, 3)


def test_probe_checks_heic_pixels_before_decoding():
    with pytest.raises(InvalidImage, match="MP"):
        probe(encoded(np.zeros((64, 64, 3), np.uint8), "HEIF"), max_pixels=64 * 63)


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
    pixels = samples.astronaut()[:64, :96].copy()
    pixels[:16, :16] = (40, 220, 40)  # a saturated green, where P3 and sRGB differ most
    heic = encoded(pixels, "HEIF", quality=95, icc_profile=icc)
    with Image.open(io.BytesIO(heic)) as image:  # what libheif decodes, still in Display P3
        raw = np.asarray(image.convert("RGB"))
        assert image.info["icc_profile"] == icc
    decoded = decode(heic)
    assert np.abs(decoded.rgb.astype(int) - to_srgb_reference(raw, icc)).max() <= 1
    assert np.abs(decoded.rgb.astype(int) - raw).max() > 10
    assert "Display P3" in decoded.warnings[0]


def test_heic_in_an_nclx_colour_space_other_than_srgb_says_it_is_not_converted():
    display_p3 = {"color_primaries": 12, "transfer_characteristics": 13, "matrix_coefficients": 6}
    heic = encoded(np.full((32, 32, 3), 90, np.uint8), "HEIF", **display_p3)
    expected = ("the colour space (nclx primaries 12, transfer 13) is not converted to sRGB; colours may shift",)
    assert decode(heic).warnings == expected and probe(heic, max_pixels=10**6).warnings == expected
    assert decode(encoded(np.full((32, 32, 3), 90, np.uint8), "HEIF")).warnings == ()  # BT.709 primaries, sRGB


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
    ("HEIF", {"quality": 95}, "HEIF file of 3 images: only the primary image is processed"),
    ("MPO", {"quality": 95}, "JPEG (MPO) of 3 pictures: only the first picture is processed"),
])
def test_animated_and_multi_page_files_give_their_first_frame_and_say_so(fmt, options, warning):
    first, *rest = frames_of([(200, 30, 30), (30, 200, 30), (30, 30, 200)])
    buffer = io.BytesIO()
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
