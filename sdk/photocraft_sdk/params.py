"""Operation parameters from the command line: ``--params JSON``, ``--param key=value`` and friendly options."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}


def parse_value(text: str) -> Any:
    """``text`` as JSON (``2`` → 2, ``true`` → True, ``{"a": 1}`` → dict), else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def set_path(params: dict, key: str, value: Any) -> None:
    """Set ``params[a][b] = value`` for ``key`` ``"a.b"``, creating the inner objects."""
    *outer, last = key.split(".")
    for name in outer:
        inner = params.get(name)
        params[name] = inner = inner if isinstance(inner, dict) else {}
        params = inner
    params[last] = value


def background(text: str) -> dict:
    """``transparent``, ``blur`` or ``blur:RADIUS`` (px), ``#rrggbb`` or ``color:#rrggbb`` → the
    ``background`` parameter of remove-background. Raises ValueError for anything else."""
    kind, _, argument = text.partition(":")
    if text.startswith("#"):
        kind, argument = "color", text
    if kind == "transparent" and not argument:
        return {"type": "transparent"}
    if kind == "blur":
        return {"type": "blur", **({"radius": float(argument)} if argument else {})}
    if kind == "color" and argument:
        return {"type": "color", "color": argument}
    raise ValueError(f"background {text!r}: expected transparent, blur[:RADIUS] or #rrggbb")


def build(params_json: str | None = None, pairs: Iterable[str] = (), options: Mapping[str, Any] | None = None,
          output: Path | None = None) -> dict:
    """The parameters object: ``params_json`` (a JSON object), then each ``key=value`` (dotted keys nest,
    values JSON-parsed), then ``options`` whose value is not None. Without an explicit
    ``output.format``, an ``output`` path ending in .png/.jpg/.jpeg/.webp sets it.
    Raises ValueError for malformed input."""
    params = json.loads(params_json) if params_json else {}
    if not isinstance(params, dict):
        raise ValueError("--params must be a JSON object")
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--param {pair!r}: expected key=value")
        set_path(params, key.strip(), parse_value(value))
    for key, value in (options or {}).items():
        if value is not None:
            set_path(params, key, value)
    fmt = FORMATS.get(output.suffix.lower()) if output is not None else None
    if fmt and "format" not in params.get("output", {}):
        set_path(params, "output.format", fmt)
    return params
