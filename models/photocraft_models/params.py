"""Reading the PARAMS a stage receives: typed, with defaults and bounds."""

from __future__ import annotations

from .serving import InvalidInput


def number(params: dict, name: str, default: float, low: float, high: float) -> float:
    """``params[name]`` as a float in [low, high]; raises InvalidInput otherwise."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a number from {low} to {high}, not {value!r}")
    return float(value)


def integer(params: dict, name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value
