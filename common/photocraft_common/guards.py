"""Cheap checks before costly work on what a client sends, so hostile input never stalls a service.

``check_form``: the operation's name and the ``params`` JSON bounded in size and nesting before
``json.loads`` sees them (a deeply nested document would exhaust its recursion). ``Prober``: photos
read from their headers first (size per photo and per batch, no pixel decoded), then decoded
(images.probe); both run in worker processes at a lower CPU priority (offload.py), never on the event
loop, and waiting photos are decoded smallest first, so a normal photo never queues behind a flood of
large ones. Every check raises Problem (documented in docs/api.md).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from itertools import accumulate

from PIL import Image, UnidentifiedImageError

from .images import NAMES, ImageInfo, InvalidImage, probe
from .offload import Crashed, Offload
from .operations import MEGAPIXEL
from .problems import Problem

MAX_PARAMS_BYTES = 64 * 1024  # a form's params, UTF-8 encoded
MAX_PARAMS_DEPTH = 16  # nested objects and arrays in params (the operations' own need 2)
MAX_OPERATION_CHARS = 64
DEFAULT_BATCH_PIXELS = 600_000_000  # a batch's photos together: fifty 12 MP photos
# Processes decoding photos, per service process: a core each but one, so decoding never fills the machine.
DEFAULT_WORKERS = max(1, (os.cpu_count() or 2) - 1)
DEFAULT_WAITING = 64  # photos waiting for a worker; more: 503 server-busy
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')  # JSON strings, whose brackets do not nest
_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")  # a Python object's repr, with its memory address
_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")  # a Python class's repr: its name is enough


def clean(text: str, limit: int = 300) -> str:
    """``text`` fit for a problem's detail: reprs with memory addresses taken out, classes by their name,
    control characters dropped, at most ``limit`` characters."""
    text = "".join(c for c in _CLASS.sub(r"\1", _REPR.sub("the data", text)) if c.isprintable())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def nesting(text: str) -> int:
    """How deep the JSON ``text`` nests objects and arrays (brackets inside strings do not count);
    a cheap scan that parses nothing, so malformed JSON gets a number too."""
    brackets = (1 if c in "[{" else -1 for c in _STRINGS.sub("", text) if c in "[]{}")
    return max(accumulate(brackets, initial=0))


def check_form(operation: str, params: str | None) -> None:
    """Raise Problem before parsing: 422 unknown-operation for a name over MAX_OPERATION_CHARS,
    413 field-too-large for params over MAX_PARAMS_BYTES, 422 params-too-deep beyond MAX_PARAMS_DEPTH."""
    if len(operation) > MAX_OPERATION_CHARS:
        raise Problem(422, "unknown-operation", "Unknown operation",
                      f"no operation has a name of {len(operation)} characters")
    if params is None:
        return
    if len(params) > MAX_PARAMS_BYTES or len(params.encode(errors="replace")) > MAX_PARAMS_BYTES:
        raise Problem(413, "field-too-large", "Form field too large",
                      f"params is larger than {MAX_PARAMS_BYTES} bytes")
    if (depth := nesting(params)) > MAX_PARAMS_DEPTH:
        raise Problem(422, "params-too-deep", "Parameters nested too deep",
                      f"params nests {depth} levels; at most {MAX_PARAMS_DEPTH} are accepted")


def dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image's first frame, from its header (no pixel is decoded).
    Raises InvalidImage when no accepted reader recognises it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except UnidentifiedImageError:
        raise InvalidImage(f"not a readable image: the format is not recognised; send {NAMES}") from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidImage(f"not a readable image: {exc}") from None


def _headers(photos: Sequence[bytes]) -> list[tuple[int, int] | str]:
    """Each photo's dimensions, or why its header cannot be read."""
    found: list[tuple[int, int] | str] = []
    for data in photos:
        try:
            found.append(dimensions(data))
        except InvalidImage as exc:
            found.append(str(exc))
    return found


class Prober:
    """Checks uploaded photos within pixel budgets, decoding in ``workers`` worker processes (offload.py).

    ``max_pixels``: per photo (PlatformSettings.max_pixels); ``batch_pixels``: all photos of one
    submission together. A request probes its photos one at a time, smallest first among all waiting;
    at most ``waiting`` photos wait for a worker (more: 503 server-busy with Retry-After), so a flood
    of uploads queues a bounded amount of work instead of stalling the event loop.
    """

    def __init__(self, max_pixels: int, batch_pixels: int = DEFAULT_BATCH_PIXELS, workers: int = DEFAULT_WORKERS,
                 waiting: int = DEFAULT_WAITING) -> None:
        if min(max_pixels, batch_pixels) < 1:
            raise ValueError("pixel budgets must be positive")
        self.max_pixels, self.batch_pixels = max_pixels, batch_pixels
        self.offload = Offload(workers, waiting)

    async def _run(self, name: str, fn, *args: object, cost: float = 0):
        try:
            return await self.offload.run(fn, *args, cost=cost)
        except Crashed:
            raise Problem(415, "unsupported-image", "Not a supported image",
                          clean(f"{name}: not a readable image: its decoder stopped on it")) from None

    async def check(self, photos: Sequence[tuple[str, bytes]], operation: str, limit_mp: float) -> list[ImageInfo]:
        """What ``probe`` finds in each of ``photos`` ((name, encoded bytes), in order), for
        ``operation``, whose photos may have at most ``limit_mp`` megapixels.

        From the headers, before decoding: Problem 415 unsupported-image (not an accepted image, or
        over ``max_pixels``), 422 image-too-large (over ``limit_mp``), 413 too-many-pixels (over
        ``batch_pixels`` together). Then each photo is decoded: 415 when it does not decode.
        """
        sizes = await self._run(", ".join(name for name, _ in photos), _headers, [data for _, data in photos])
        total = 0
        for (name, _), size in zip(photos, sizes, strict=True):
            if isinstance(size, str):
                raise Problem(415, "unsupported-image", "Not a supported image", clean(f"{name}: {size}"))
            width, height = size
            if width * height > self.max_pixels:
                raise Problem(415, "unsupported-image", "Not a supported image",
                              clean(f"{name}: {width}x{height} is {width * height / 1e6:.1f} MP; "
                                    f"the limit is {self.max_pixels / 1e6:.1f} MP"))
            if width * height > limit_mp * MEGAPIXEL:
                raise Problem(422, "image-too-large", "Image too large for these parameters",
                              clean(f"{name}: {width}x{height} is over {limit_mp:g} MP, the limit of "
                                    f"{operation} with these parameters"))
            total += width * height
        if total > self.batch_pixels:
            raise Problem(413, "too-many-pixels", "Too many pixels",
                          f"the photos add up to {total:,} pixels; one submission may have at most "
                          f"{self.batch_pixels:,} ({self.batch_pixels / 1e6:g} MP)")
        infos = []
        for (name, data), (width, height) in zip(photos, sizes, strict=True):
            try:
                infos.append(await self._run(name, probe, data, self.max_pixels, cost=width * height))
            except InvalidImage as exc:
                raise Problem(415, "unsupported-image", "Not a supported image", clean(f"{name}: {exc}")) from None
        return infos
