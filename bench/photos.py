"""The speed benchmark's photos: real photos from scikit-image, made distinct and 0.25-4 MP.

    .venv/bin/python bench/photos.py [--photos 50]      (makes and lists them)

Each photo is a recipe drawn from a seeded generator: one of scikit-image's colour photos of a
subject (astronaut, coffee, chelsea, rocket, the left view of stereo_motorcycle), a crop of 60-100 %
of each side, a horizontal flip or not, a size in megapixels and a JPEG quality (75-95). Sizes cycle
through the three bands of the report (0.25-1, 1-2.5, 2.5-4 MP), uniform within each, so that any
prefix of the corpus covers every band. The same recipes always give the same bytes (Pillow's
Lanczos resampling and its JPEG encoder); no two photos share their bytes, so the platform can reuse
no result. Files are cached in var/bench/photos/, named after their recipe.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "var" / "bench" / "photos"
SOURCES: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket,
    "motorcycle": lambda: data.stereo_motorcycle()[0],
}
BANDS = ((0.25, 1.0), (1.0, 2.5), (2.5, 4.0))  # megapixels (10**6 pixels), lower bound inclusive
SEED = 13


@functools.cache
def source(name: str) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of the source photo ``name``, loaded once."""
    return SOURCES[name]()


def band_of(megapixels: float) -> str:
    """The report's size band of a photo of ``megapixels`` MP, e.g. "1-2.5 MP"; ValueError outside 0.25-4."""
    for low, high in BANDS:
        if low <= megapixels < high or (high == BANDS[-1][1] and megapixels == high):
            return f"{low:g}-{high:g} MP"
    raise ValueError(f"{megapixels} MP is outside the corpus' 0.25-4 MP")


@dataclass(frozen=True)
class Recipe:
    """How one photo is made: ``crop`` is (top, left, height, width) in the source's pixels,
    ``size`` the output's (width, height) in pixels."""

    index: int
    source: str
    crop: tuple[int, int, int, int]
    flip: bool
    size: tuple[int, int]
    quality: int

    @property
    def megapixels(self) -> float:
        return self.size[0] * self.size[1] / 1e6

    @property
    def name(self) -> str:
        return (f"{self.index:02d}-{self.source}-{self.size[0]}x{self.size[1]}-q{self.quality}"
                f"{'-flip' if self.flip else ''}.jpg")


def recipes(count: int = 50, seed: int = SEED) -> list[Recipe]:
    """The first ``count`` recipes of the corpus (a prefix of a longer corpus is the same photos)."""
    rng = np.random.default_rng(seed)
    names = list(SOURCES)
    shapes = {name: source(name).shape[:2] for name in names}
    made = []
    for index in range(count):
        name = names[index % len(names)]
        height, width = shapes[name]
        crop_h, crop_w = (int(side * rng.uniform(0.6, 1.0)) for side in (height, width))
        top, left = int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1))
        low, high = BANDS[index % len(BANDS)]
        megapixels = rng.uniform(low + 0.02, high - 0.02)
        out_w = round(math.sqrt(megapixels * 1e6 * crop_w / crop_h))
        out_h = round(megapixels * 1e6 / out_w)
        made.append(Recipe(index, name, (top, left, crop_h, crop_w), bool(rng.random() < 0.5), (out_w, out_h),
                           int(rng.integers(75, 96))))
    return made


def render(recipe: Recipe) -> bytes:
    """The JPEG bytes of ``recipe``."""
    top, left, height, width = recipe.crop
    pixels = source(recipe.source)[top:top + height, left:left + width]
    image = Image.fromarray(pixels[:, ::-1] if recipe.flip else pixels).resize(recipe.size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=recipe.quality)
    return buffer.getvalue()


@dataclass(frozen=True)
class Photo:
    recipe: Recipe
    path: Path

    @property
    def band(self) -> str:
        return band_of(self.recipe.megapixels)


def corpus(count: int = 50, cache: Path = CACHE) -> list[Photo]:
    """The corpus' first ``count`` photos as files in ``cache`` (made once). Raises RuntimeError if two
    share their bytes."""
    cache.mkdir(parents=True, exist_ok=True)
    photos = []
    for recipe in recipes(count):
        path = cache / recipe.name
        if not path.exists():
            partial = path.with_suffix(".part")
            partial.write_bytes(render(recipe))
            partial.rename(path)
        photos.append(Photo(recipe, path))
    digests = {hashlib.sha256(p.path.read_bytes()).hexdigest() for p in photos}
    if len(digests) != len(photos):
        raise RuntimeError(f"{len(photos) - len(digests)} photos of the corpus share their bytes with another")
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=50)
    args = parser.parse_args()
    for photo in corpus(args.photos):
        print(f"{photo.path.relative_to(ROOT)}  {photo.recipe.megapixels:.2f} MP  {photo.band}  "
              f"{photo.path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
