"""Whether an ended job gives its edit back to its caller's daily quota, as pure functions (no I/O).

An edit (photocraft_common.quotas) goes back when the job

- failed, whatever failed (reason ``failed``);
- was cancelled before any stage ran (``cancelled-early``): no stage of it is done and none was ever
  handed to a worker (``stages.State.ran``); a skipped stage did not run;
- completed as a no-op (``no-op``): no stage changed the photo, so the result is the input as sent.
  A stage changed nothing (``unchanged``) when it passed its input image on (it was skipped, or it is an
  analysis, which makes no image), when it ran with parameters at which its model leaves a photo as it is
  (photocraft_common.no_ops: tone and retouch with every strength 0),
  or when its model reports that it found no face to work on (``"faces": 0`` in its info: retouch, GFPGAN).
  E.g. restore of a clean colour photo without faces (only the analysis and a tone stage at 0 run),
  enhance with scale 1 and every strength 0, retouch of a photo without a face.

A completed job with any other stage keeps its edit, as does a job cancelled after a stage ran.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from photocraft_common.contracts import TaskOutput
from photocraft_common.jobs import JobRecord, JobStatus
from photocraft_common.no_ops import leaves_unchanged
from photocraft_common.operations import Stage, UnknownOperation, ValidationError

from .plan import Plan, decision, image_of
from .stages import State


def unchanged(plan: Plan, stage: Stage, outputs: Mapping[str, TaskOutput]) -> bool:
    """Whether the finished ``stage`` of ``plan`` left the photo as it was (see the module);
    ``outputs``: every finished stage's recorded output. Raises KeyError when ``stage`` has none."""
    output, inputs = outputs[stage.name], plan.inputs(stage, outputs)
    if inputs and image_of(output).key == inputs[0].key:
        return True
    sent = {**stage.params, **decision(stage, outputs)[1]}
    if all(leaves_unchanged(model, sent) for model in stage.models):
        return True
    return json.loads(output.info_json or "{}").get("faces") == 0


def is_no_op(plan: Plan, states: Mapping[str, str], outputs: Mapping[str, TaskOutput]) -> bool:
    """Whether a complete job changed nothing: every stage that finished left the photo unchanged."""
    finished = plan.finished(states)
    return plan.is_complete(states) and all(unchanged(plan, s, outputs) for s in plan.stages if s.name in finished)


def edit_returned(record: JobRecord, states: Mapping[str, str], outputs: Mapping[str, TaskOutput]) -> str:
    """Why the ended job of ``record`` gives its edit back ("failed", "cancelled-early" or "no-op"), or ""
    when it keeps it (also while it has not ended). ``states``, ``outputs``: its stages' (stages.StageStore)."""
    if record.status is JobStatus.FAILED:
        return "failed"
    if record.status is JobStatus.CANCELLED:
        return "" if any(State.ran(state) for state in states.values()) else "cancelled-early"
    if record.status is JobStatus.COMPLETED:
        try:
            return "no-op" if is_no_op(Plan.of(record), states, outputs) else ""
        except (UnknownOperation, ValidationError, KeyError, StopIteration):  # not a plan's records: kept
            return ""
    return ""
