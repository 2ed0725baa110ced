"""Reading and writing images with Pillow (HEIC/HEIF through pi-heif); PNG is written by
imagecodecs (libpng with zlib), several times faster than Pillow's encoder at a like size.

Arrays are ``(H, W, 3) uint8 RGB`` or ``(H, W, 4) uint8 RGBA``, row-major,
top row first, with the EXIF orientation already applied, in sRGB.

Sources: HEIC/HEIF is read by pi-heif (source BSD-3-Clause), pillow-heif's
decode-only build, whose binary wheels bundle libheif and libde265 (LGPL-3.0,
as shared libraries) and no encoder (pillow-heif's bundle x265, GPL-2.0). Only
HEIF image items are read: a HEIF sequence is read through its primary still
image, and one that holds only a video track is refused as unreadable. ICC
colour management is LittleCMS 2 (MIT) through Pillow's ImageCms. imagecodecs is BSD-3-Clause
(its libpng: libpng licence; zlib: zlib licence).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import imagecodecs
import numpy as np
import pi_heif
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# HEIF files open as Pillow format "HEIF"; thumbnails, depth and auxiliary images are never used.
pi_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)

# Formats accepted from clients, by Pillow's format name, with their MIME type
# and the file extension used for the stored original. MPO is a JPEG with more
# pictures after the first (cameras' previews and depth maps). HEIF is split by MIME type below.
ACCEPTED = {
    "JPEG": ("image/jpeg", "jpg"),
    "MPO": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
    "TIFF": ("image/tiff", "tiff"),
    "BMP": ("image/bmp", "bmp"),
    "GIF": ("image/gif", "gif"),
    "HEIF": ("image/heif", "heif"),
}
# pi-heif's MIME type (from the file's brand) -> the stored one and its extension; AVIF is not accepted.
NAMES = "JPEG, PNG, WebP, TIFF, BMP, GIF or HEIC/HEIF"  # for error messages
HEIF_KINDS = {"image/heic": ("image/heic", "heic"), "image/heic-sequence": ("image/heic", "heic"),
              "image/heif": ("image/heif", "heif"), "image/heif-sequence": ("image/heif", "heif")}

# Rendering intent of the conversion to sRGB. Perceptual: where a profile carries its own gamut
# mapping (LUT profiles, e.g. CMYK print profiles) it is used, so out-of-gamut colours keep their
# gradations; matrix/TRC profiles such as Display P3 or Adobe RGB have none, and there LittleCMS
# computes the same colorimetric result as relative colorimetric (out-of-gamut channels clipped).
INTENT = ImageCms.Intent.PERCEPTUAL
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Pillow's modes of the pixels an ICC profile's colour space can describe (after palettes are expanded).
_PROFILE_MODES = {"RGB": ("RGB", "RGBA", "RGBX", "P", "PA"), "CMYK": ("CMYK",),
                  "GRAY": ("L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")}


class InvalidImage(ValueError):
    """The bytes are not an image we accept; the message says why."""


@dataclass(frozen=True)
class ImageInfo:
    """What ``probe`` found: format, stored MIME type and extension, displayed size in pixels."""

    format: str  # Pillow's name, e.g. "JPEG"
    mime_type: str
    extension: str
    width: int  # pixels, after the EXIF orientation
    height: int
    frames: int = 1  # frames or pages in the file; only the first is processed
    warnings: tuple[str, ...] = ()  # what decode will change or leave out, for the client


def _kind(image: Image.Image) -> tuple[str, str]:
    """(MIME type, extension) of an opened image; raises InvalidImage for formats not accepted."""
    fmt = image.format
    if fmt == "HEIF":
        mime = image.get_format_mimetype() or ""
        if mime not in HEIF_KINDS:
            raise InvalidImage(f"{mime or 'this HEIF'} images are not accepted; send {NAMES}")
        return HEIF_KINDS[mime]
    if fmt not in ACCEPTED:
        raise InvalidImage(f"{fmt} images are not accepted; send {NAMES}")
    return ACCEPTED[fmt]


def _frames(image: Image.Image) -> int:
    """Frames (GIF, WebP, APNG), pages (TIFF), pictures (MPO) or top-level images (HEIF) in the file."""
    return int(getattr(image, "n_frames", 1))


def _frames_warning(image: Image.Image, frames: int) -> list[str]:
    if frames <= 1:
        return []
    what = {"TIFF": "multi-page TIFF", "MPO": "JPEG (MPO)", "HEIF": "HEIF file"}.get(
        image.format, f"animated {image.format}" if getattr(image, "is_animated", False) else image.format)
    unit = {"TIFF": "pages", "MPO": "pictures", "HEIF": "images"}.get(image.format, "frames")
    first = "the primary image" if image.format == "HEIF" else "the first " + unit[:-1]
    return [f"{what} of {frames} {unit}: only {first} is processed"]


def _profile_name(profile: ImageCms.ImageCmsProfile) -> str:
    """The profile's description, printable and at most 60 characters."""
    text = "".join(c for c in (ImageCms.getProfileDescription(profile) or "").strip() if c.isprintable())
    return text[:60] or "unnamed"


def _nclx_warning(nclx: dict | None) -> list[str]:
    """A HEIF colour space given as H.273 code points (nclx) rather than an ICC profile is not converted:
    silent where sRGB shows it as meant (BT.709 or unspecified primaries, an SDR curve), else a warning."""
    if not isinstance(nclx, dict):
        return []
    primaries, transfer = nclx.get("color_primaries", 2), nclx.get("transfer_characteristics", 2)
    if primaries in (1, 2) and transfer in (1, 2, 6, 13, 14, 15):
        return []
    return [f"the colour space (nclx primaries {primaries}, transfer {transfer}) is not converted to sRGB; "
            "colours may shift"]


def _to_srgb(image: Image.Image) -> tuple[ImageCms.ImageCmsTransform | None, list[str]]:
    """The transform from ``image``'s embedded ICC profile to sRGB, or None where there is nothing to
    convert: no profile, or one that moves no colour by more than one level (sRGB itself). A profile that
    cannot be read or does not fit the pixels is ignored with a warning (the pixels are taken as sRGB)."""
    icc = image.info.get("icc_profile")
    if not icc:
        return None, _nclx_warning(image.info.get("nclx_profile"))
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        name = _profile_name(profile)
    except (OSError, ImageCms.PyCMSError, ValueError, TypeError):
        return None, ["the embedded ICC profile cannot be read; colours taken as sRGB"]
    if image.mode not in _PROFILE_MODES.get(space, ()):
        return None, [f"the embedded ICC profile '{name}' is for {space or 'unknown'} colours, not {image.mode} "
                      "pixels; ignored, colours taken as sRGB"]
    mode = {"RGB": "RGB", "GRAY": "L", "CMYK": "CMYK"}[space]
    try:
        transform = ImageCms.buildTransform(profile, _SRGB, mode, "RGB", renderingIntent=INTENT)
    except (OSError, ImageCms.PyCMSError, ValueError) as exc:
        return None, [f"the embedded ICC profile '{name}' cannot be applied ({exc}); colours taken as sRGB"]
    if mode != "CMYK":
        levels = np.arange(0, 256, 15, dtype=np.uint8)  # 18 levels per channel
        if mode == "RGB":
            grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(1, -1, 3)
            expected = grid
        else:
            grid = levels.reshape(1, -1)
            expected = np.repeat(grid[..., None], 3, axis=-1)
        moved = np.asarray(ImageCms.applyTransform(Image.fromarray(grid), transform)).astype(int) - expected
        if np.abs(moved).max() <= 1:
            return None, []
    return transform, [f"colours converted from the embedded ICC profile '{name}' to sRGB"]


def probe(data: bytes, max_pixels: int) -> ImageInfo:
    """Identify and fully decode an uploaded image (its first frame).

    The format and size are checked from the header before any pixel is
    decoded. ``warnings`` says what ``decode`` will do beyond decoding: take
    the first of several frames, convert an ICC profile to sRGB, ignore a
    profile it cannot use. Raises InvalidImage when the data is not a JPEG,
    PNG, WebP, TIFF, BMP, GIF or HEIC/HEIF image, has more than
    ``max_pixels`` in its first frame, or does not decode (truncated or corrupt).
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            (mime, ext), (width, height) = _kind(image), image.size
            if width * height > max_pixels:
                raise InvalidImage(f"{width}x{height} is {width * height / 1e6:.1f} MP; "
                                   f"the limit is {max_pixels / 1e6:.1f} MP")
            frames = _frames(image)
            image.load()
            orientation = image.getexif().get(0x0112, 1)
            warnings = _frames_warning(image, frames) + _to_srgb(image)[1]
    except InvalidImage:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"not a readable image: {exc}") from None
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    return ImageInfo(image.format, mime, ext, width, height, frames, tuple(warnings))


@dataclass(frozen=True)
class Decoded:
    """A decoded image: ``rgb`` is ``(H, W, 3) uint8`` sRGB; ``alpha`` ``(H, W) uint8`` or None;
    ``warnings`` what decoding changed or left out (see ``decode``), for the client."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    warnings: tuple[str, ...] = ()


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
    """Decode any accepted image once, its first frame only (HEIF: the primary image).

    EXIF orientation applied; an embedded ICC profile converted to sRGB with
    ``INTENT`` (LittleCMS); palette, CMYK, gray and 16-bit images converted to
    8-bit RGB; transparency kept as alpha. ``warnings`` names the frames left
    out and the colour conversion, as ``probe`` does.

    Raises InvalidImage when the data cannot be decoded.
    """
    try:
        with Image.open(io.BytesIO(data)) as opened:
            warnings = _frames_warning(opened, _frames(opened))
            opened.load()
            transform, notes = _to_srgb(opened)
            image = _to_8bit(ImageOps.exif_transpose(opened))
            has_alpha = "A" in image.getbands() or "transparency" in image.info
            alpha = np.asarray(image.convert("RGBA"))[..., 3] if has_alpha else None
            if transform is not None:
                image = ImageCms.applyTransform(image.convert(transform.input_mode), transform)
            rgb = np.asarray(image.convert("RGB"))
            return Decoded(rgb, None if alpha is None else np.ascontiguousarray(alpha), tuple(warnings + notes))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"cannot decode image: {exc}") from None


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode to ``(H, W, 3) uint8 RGB`` (see ``decode``); transparency is dropped."""
    return decode(data).rgb


# Output formats: file extension -> (Pillow format, MIME type).
FORMATS = {"png": ("PNG", "image/png"), "jpg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}

# PNG settings (imagecodecs.png_encode's level, row filter, zlib strategy). A result: the Paeth filter and
# zlib's run-length strategy, about 10x as fast as zlib level 6 with adaptive filters (Pillow's default)
# for files at most 1.1x as large (level 3 with the Up filter before it: 1.5x slower, up to 1.25x as
# large); see bench/results/worker_path.md. An intermediate stage output, read once by the next stage:
# stored uncompressed (level 0, no filter), which costs a copy to write and read.
PNG_RESULT = {"level": 1, "filter": imagecodecs.PNG.FILTER.PAETH, "strategy": imagecodecs.PNG.STRATEGY.RLE}
PNG_INTERMEDIATE = {"level": 0, "filter": imagecodecs.PNG.FILTER.NONE}


def encode(pixels: np.ndarray, extension: str = "png", quality: int = 92, intermediate: bool = False) -> bytes:
    """Encode ``(H, W) uint8`` gray, ``(H, W, 3|4) uint8`` as png, jpg or webp, without any metadata.

    JPEG has no alpha: an RGBA image is composited on white first. ``quality``
    (1..100) applies to JPEG and WebP. ``intermediate``: a PNG that only the
    next stage reads, written uncompressed (``PNG_INTERMEDIATE``). Raises
    KeyError for other extensions.
    """
    fmt, _ = FORMATS[extension]
    if fmt == "PNG":
        setting = PNG_INTERMEDIATE if intermediate else PNG_RESULT
        return imagecodecs.png_encode(np.ascontiguousarray(pixels), **setting)
    image = Image.fromarray(pixels)
    if fmt == "JPEG" and image.mode == "RGBA":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    options = {"JPEG": {"quality": quality, "optimize": True}, "WEBP": {"quality": quality, "method": 4}}[fmt]
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an ``(H, W, 3|4) uint8`` array, without metadata."""
    return encode(pixels, "png")
