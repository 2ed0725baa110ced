"""Where results go: names derived from the photos and the operation."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "application/json": ".json"}
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".heic", ".heif"}


def photos_in(folder: Path) -> list[Path]:
    """The photos directly in ``folder`` (by suffix, case-insensitive), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def stems(photos: Sequence[Path], operation: str) -> dict[Path, str]:
    """A distinct result name without extension for each photo: ``<stem>-<operation>``, or
    ``<stem>-<ext>-<operation>`` when two photos share a stem (a.jpg and a.png)."""
    shared = Counter(p.stem for p in photos)
    return {p: f"{p.stem}-{p.suffix.lstrip('.').lower()}-{operation}" if shared[p.stem] > 1
            else f"{p.stem}-{operation}" for p in photos}


def result_paths(results: Sequence[Mapping], base: Path) -> list[tuple[Mapping, Path]]:
    """Pair each result with its file: the image at ``base`` with its content type's extension
    (``base``'s own suffix kept when it already fits), other roles at ``<base>-<role>.<ext>``."""
    paired = []
    for result in results:
        ext = EXTENSIONS.get(result["content_type"], ".bin")
        fits = base.suffix.lower() == ext or (ext == ".jpg" and base.suffix.lower() == ".jpeg")
        stem = base.with_suffix("") if base.suffix.lower() in {*EXTENSIONS.values(), ".jpeg"} else base
        if result.get("role", "image") == "image":
            paired.append((result, base if fits else stem.with_name(stem.name + ext)))
        else:
            paired.append((result, stem.with_name(f"{stem.name}-{result['role']}{ext}")))
    return paired


def slug(text: str, words: int = 6) -> str:
    """A file name from a prompt: its first ``words`` words, lower case, dashes (``"image"`` if empty)."""
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:words]) or "image"
