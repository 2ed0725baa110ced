"""Warnings for people about a stage that could not run as its recipe prefers, as pure functions (no I/O).

Each reaches the client prefixed by its stage (plan.Complete), e.g. ``faces: model gfpgan is not installed;
ran retouch instead`` or ``colorize: model colorize_eccv16 is not installed; the photo stays black-and-white``.
"""

from __future__ import annotations

from photocraft_common.contracts import TaskOutput
from photocraft_common.operations import Stage

# What a job lacks when an optional stage is skipped for want of its models.
WITHOUT = {"colorize": "the photo stays black-and-white"}


def fallback_warning(stage: Stage, model: str) -> str:
    """The warning of ``stage`` run on ``model`` when that is not its preferred (first) model, which
    is then not installed, e.g. "model gfpgan is not installed; ran retouch instead"; else ""."""
    preferred = stage.models[0]
    return "" if model in ("", preferred) else f"model {preferred} is not installed; ran {model} instead"


def missing_warning(stage: Stage) -> str:
    """The warning of an optional ``stage`` skipped because none of its models is installed: what the job
    lacks (``WITHOUT``), e.g. "model colorize_eccv16 is not installed; the photo stays black-and-white"."""
    return f"model {stage.models[0]} is not installed; {WITHOUT.get(stage.name, f'{stage.name} was skipped')}"


def warned(output: TaskOutput, warning: str) -> TaskOutput:
    """``output`` with ``warning`` added to its warnings (none added when it is "" or there already)."""
    if warning and warning not in output.warnings:
        output.warnings.append(warning)
    return output
