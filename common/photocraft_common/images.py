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


@dataclass(frozen=True)
class Decoded:
    """A decoded image: ``rgb`` is ``(H, W, 3) uint8``; ``alpha`` ``(H, W) uint8`` or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None


def _to_8bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit gray (modes I;16*, I, F) scaled to 8-bit L; other modes as they are."""
    if image.mode.startswith("I;16") or image.mode == "I":
        wide = np.asarray(image, dtype=np.float64)
        top = 65535.0 if wide.max() > 255 else 255.0
        return Image.fromarray(np.clip(wide * 255.0 / top + 0.5, 0, 255).astype(np.uint8))
    if image.mode == "F":
        return Image.fromarray(np.clip(np.asarray(image) * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return image


def decode(data: bytes) -> Decoded:
    """Decode any accepted image once: EXIF orientation applied; palette, CMYK,
    gray and 16-bit images converted to 8-bit RGB; transparency kept as alpha.

    Raises InvalidImage when the data cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            image = _to_8bit(ImageOps.exif_transpose(opened))
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            if not has_alpha:
                return Decoded(np.asarray(image.convert("RGB")))
            rgba = np.asarray(image.convert("RGBA"))
            return Decoded(np.ascontiguousarray(rgba[..., :3]), np.ascontiguousarray(rgba[..., 3]))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"cannot decode image: {exc}") from None


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode to ``(H, W, 3) uint8 RGB`` (see ``decode``); transparency is dropped."""
    return decode(data).rgb


# Output formats: file extension -> (Pillow format, MIME type).
FORMATS = {"png": ("PNG", "image/png"), "jpg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}


def encode(pixels: np.ndarray, extension: str = "png", quality: int = 92) -> bytes:
    """Encode ``(H, W, 3|4) uint8`` as png, jpg or webp, without any metadata.

    JPEG has no alpha: an RGBA image is composited on white first. ``quality``
    (1..100) applies to JPEG and WebP. Raises KeyError for other extensions.
    """
    fmt, _ = FORMATS[extension]
    image = Image.fromarray(pixels)
    if fmt == "JPEG" and image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    options = {"PNG": {"compress_level": 6}, "JPEG": {"quality": quality, "optimize": True},
               "WEBP": {"quality": quality, "method": 4}}[fmt]
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3|4) uint8`` array, without metadata."""
    return encode(pixels, "png")
