"""Writes the HEIC files that tests/unit/test_images.py decodes (tests/unit/data/heic/).

The platform decodes HEIC with pi-heif, which carries no encoder (no x265, so no GPL code in our images),
so these files were written once with pillow-heif, which does: in a throwaway environment,

    python3 -m venv /tmp/heic && /tmp/heic/bin/pip install pillow-heif==1.8.1 scikit-image==0.26.0
    /tmp/heic/bin/python tests/unit/data/make_heic.py

Each file is named after what it holds; the tests rebuild the same pixels from scikit-image's samples.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pillow_heif
from PIL import Image
from skimage import data as samples

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from icc import display_p3_icc  # noqa: E402  (tests/unit/icc.py, which imports nothing of ours)

pillow_heif.register_heif_opener()


def astronaut() -> np.ndarray:
    return samples.astronaut()[:96, :128]


def p3_green() -> np.ndarray:
    pixels = samples.astronaut()[:64, :96].copy()
    pixels[:16, :16] = (40, 220, 40)  # a saturated green, where P3 and sRGB differ most
    return pixels


def orientation_6() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display; pillow-heif writes it as the HEIF rotation
    return exif.tobytes()


FILES = {
    "astronaut-128x96-q95.heic": (astronaut, {"quality": 95}),
    "black-60x40-orientation-6.heic": (lambda: np.zeros((40, 60, 3), np.uint8), {"exif": orientation_6()}),
    "black-64x64.heic": (lambda: np.zeros((64, 64, 3), np.uint8), {}),
    "display-p3-96x64-q95.heic": (p3_green, {"quality": 95, "icc_profile": display_p3_icc()}),
    "nclx-display-p3-32x32.heic": (lambda: np.full((32, 32, 3), 90, np.uint8),
                                   {"color_primaries": 12, "transfer_characteristics": 13, "matrix_coefficients": 6}),
    "gray-32x32.heic": (lambda: np.full((32, 32, 3), 90, np.uint8), {}),  # pillow-heif's default nclx: sRGB
    # three images, the primary one red: a phone's burst or live photo
    "red-green-blue-40x30.heic": (lambda: np.full((30, 40, 3), (200, 30, 30), np.uint8), {
        "quality": 95, "save_all": True,
        "append_images": [Image.new("RGB", (40, 30), colour) for colour in ((30, 200, 30), (30, 30, 200))]}),
}


def main() -> None:
    out = HERE / "heic"
    out.mkdir(exist_ok=True)
    for name, (pixels, options) in FILES.items():
        buffer = io.BytesIO()
        Image.fromarray(pixels()).save(buffer, format="HEIF", **options)
        (out / name).write_bytes(buffer.getvalue())
        print(name, len(buffer.getvalue()), "bytes")


if __name__ == "__main__":
    main()
