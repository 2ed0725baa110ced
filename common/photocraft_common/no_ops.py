"""The parameters at which a model leaves a photo as it is: a fact of the models, as their docs in
models/photocraft_models state it (tone.Tone, retouch.Retouch), shared by the scheduler (a job that changed
nothing gives its edit back) and gpu-inference (a filter stage that changes nothing is not sent to Triton).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["UNCHANGED_AT_ZERO", "ZERO_UNLESS_SENT", "leaves_unchanged"]

# Models that return the photo unchanged when every one of these parameters is sent as 0 (their defaults are not 0)...
UNCHANGED_AT_ZERO = {"tone": ("contrast", "saturation", "sharpen"), "retouch": ("skin", "teeth", "eyes")}
# ... and these too are 0, or not sent: the balance strengths of "tone" (restore's balance stage), 0 by default.
ZERO_UNLESS_SENT = {"tone": ("neutralise", "dyes", "cast", "levels")}


def leaves_unchanged(model: str, params: Mapping[str, object]) -> bool:
    """Whether ``model`` run with ``params`` (as sent to it) returns its input image as it is; False for a model
    not in ``UNCHANGED_AT_ZERO``."""
    if model not in UNCHANGED_AT_ZERO:
        return False
    return (all(params.get(name) == 0 for name in UNCHANGED_AT_ZERO[model])
            and all(params.get(name, 0) == 0 for name in ZERO_UNLESS_SENT.get(model, ())))
