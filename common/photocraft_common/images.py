"""Reading and writing images with Pillow.

Arrays are ``(H, W, 3) uint8 RGB`` or ``(H, W, 4) uint8 RGBA``, row-major,
top row first, with the EXIF orientation already applied.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats accepted from clients, by Pillow's format name, with their MIME type
# and the file extension used for the stored original.
ACCEPTED = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "TIFF": ("image/tiff", "tiff"),
    "BMP": ("image/bmp", "bmp"),
    "GIF": ("image/gif", "gif"),
}


class InvalidImage(ValueError):
    """The bytes are not an image we accept; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow's name, e.g. "JPEG"
    mime_type: str
    extension: str
    width: int  # pixels, after the EXIF orientation
    height: int


def probe(data: bytes, max_pixels: int) -> ImageInfo:
    """Identify and fully decode an uploaded image.

    The format and size are checked from the header before any pixel is
    decoded. Raises InvalidImage when the data is not a JPEG, PNG, WebP, TIFF,
    BMP or GIF image, has more than ``max_pixels``, or does not decode
    (truncated or corrupt).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt, (width, height) = image.format, image.size
            if fmt not in ACCEPTED:
                raise InvalidImage(f"{fmt} images are not accepted; send one of {', '.join(ACCEPTED)}")
            if width * height > max_pixels:
                raise InvalidImage(f"{width}x{height} is {width * height / 1e6:.1f} MP; "
                                   f"the limit is {max_pixels / 1e6:.1f} MP")
            image.load()
            orientation = image.getexif().get(0x0112, 1)
    except InvalidImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"not a readable image: {exc}") from None
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    mime, ext = ACCEPTED[fmt]
    return ImageInfo(fmt, mime, ext, width, height)


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode to ``(H, W, 3) uint8 RGB``, EXIF orientation applied; transparency is dropped.

    Raises InvalidImage when the data cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"cannot decode image: {exc}") from None


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3|4) uint8`` array, without metadata."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
