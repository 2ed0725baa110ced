"""enhance, remove-background and retouch through the platform, on real photos and real models."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data

from .helpers import download, fresh, job_events, png_bytes


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


async def test_enhance_x2_doubles_both_sides(gateway):
    photo = data.chelsea()[:90, 100:220]  # 120 x 90
    events = await job_events(gateway, "enhance", {"scale": 2}, png_bytes(photo))
    assert events[-1]["type"] == "completed", events[-1]
    assert [e["stage"] for e in events if e["type"] == "stage_completed"] == ["denoise", "upscale", "tone"]
    result = download(events[-1]["results"][0])
    assert result.size == (240, 180) and result.mode == "RGB"
    # Still the same picture: the result shrunk back correlates with the input.
    back = np.asarray(result.resize((120, 90), Image.Resampling.BICUBIC), dtype=float)
    assert np.corrcoef(back.ravel(), photo.astype(float).ravel())[0, 1] > 0.95


async def test_enhance_x4_with_real_esrgan(gateway):
    photo = data.astronaut()[100:132, 200:248]  # 48 x 32
    events = await job_events(gateway, "enhance", {"scale": 4, "denoise": 0}, png_bytes(photo))
    assert events[-1]["type"] == "completed", events[-1]
    assert [e["stage"] for e in events if e["type"] == "stage_completed"] == ["upscale", "tone"]
    assert download(events[-1]["results"][0]).size == (192, 128)


@pytest.mark.parametrize(("fmt", "mime"), [("jpeg", "image/jpeg"), ("webp", "image/webp")])
async def test_output_format_is_honoured_without_metadata(gateway, fmt, mime):
    exif = Image.Exif()
    exif[0x010F] = "SecretCameraMaker"
    photo = encoded(Image.fromarray(data.coffee()[:100, :150]), "JPEG", exif=exif.tobytes())
    params = {"scale": 1, "denoise": 0, "output": {"format": fmt, "quality": 80}}
    events = await job_events(gateway, "enhance", params, photo)
    result = events[-1]["results"][0]
    assert result["content_type"] == mime
    image = download(result)
    assert image.size == (150, 100) and not image.getexif()


async def test_inputs_are_decoded_once_whatever_their_encoding(gateway):
    """CMYK, 16-bit gray, palette with transparency, RGBA: all decoded, alpha kept."""
    rgb = Image.fromarray(data.astronaut()[:64, :80])
    rgba = rgb.copy()
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (64, 1))))
    gray16 = Image.fromarray(data.camera()[:64, :80].astype(np.uint16) * 257)
    inputs = {
        "cmyk": encoded(rgb.convert("CMYK"), "JPEG"),
        "gray16": encoded(gray16, "PNG"),
        "palette": encoded(rgba.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0),
        "rgba": encoded(rgba, "PNG"),
    }
    params = {"scale": 1, "denoise": 0, "contrast": 0, "saturation": 0, "sharpen": 0}
    for name, photo in inputs.items():
        events = await job_events(gateway, "enhance", params, photo)
        assert events[-1]["type"] == "completed", (name, events[-1])
        image = download(events[-1]["results"][0])
        assert image.size == (80, 64), name
        if name == "rgba":
            assert image.mode == "RGBA"
            assert np.abs(np.asarray(image)[..., 3].astype(int) - np.asarray(rgba)[..., 3]).max() <= 1
        if name == "gray16":  # 16-bit values scaled, not clipped to white
            assert abs(np.asarray(image.convert("L"), float).mean() - data.camera()[:64, :80].mean()) < 3


async def test_remove_background_on_a_solid_colour_and_for_a_person(gateway):
    params = {"subject": "person", "background": {"type": "color", "color": "#00ff00"},
              "output": {"format": "jpeg"}}
    events = await job_events(gateway, "remove-background", params, png_bytes(data.astronaut()))
    assert events[-1]["type"] == "completed", events[-1]
    image = np.asarray(download(events[-1]["results"][0]), dtype=int)
    assert image.shape == (512, 512, 3)
    corner = image[:40, -40:].reshape(-1, 3).mean(axis=0)  # studio backdrop, now green
    assert corner[1] > 200 and corner[0] < 60 and corner[2] < 60
    face = image[100:170, 190:250].reshape(-1, 3).mean(axis=0)
    assert face[0] > face[1]  # skin, not green


async def test_retouch_changes_pixels_only_inside_the_face_mask(gateway):
    photo = data.astronaut()
    events = await job_events(gateway, "retouch", {"skin": 0.8, "teeth": 0.8, "eyes": 0.8}, png_bytes(photo))
    assert events[-1]["type"] == "completed", events[-1]
    results = {r["role"]: download(r) for r in events[-1]["results"]}
    image, mask = np.asarray(results["image"]), np.asarray(results["mask"])
    assert image.shape == (512, 512, 3) and mask.shape == (512, 512)
    changed = np.any(image != photo, axis=2)
    assert changed.sum() > 2000, "the face must be retouched"
    assert not (changed & (mask == 0)).any(), "a pixel outside the face mask changed"
    assert (mask > 0).mean() < 0.15 and (mask[90:170, 190:260] > 0).mean() > 0.9


async def test_retouch_without_a_face_completes_unchanged_with_a_warning(gateway):
    photo = fresh(data.coffee()[:200, :300])
    events = await job_events(gateway, "retouch", {}, png_bytes(photo))
    assert events[-1]["type"] == "completed", events[-1]
    assert events[-1]["warnings"] == ["retouch: no face found"]
    image = next(r for r in events[-1]["results"] if r["role"] == "image")
    assert np.array_equal(np.asarray(download(image)), photo)
