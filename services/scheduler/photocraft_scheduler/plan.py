"""The job graph: what a job's stages are and what becomes of each, as pure functions (no I/O).

A job is a dependency graph of stages, its operation's recipe (photocraft_common.operations).
Its *final* stages are those no other stage needs; their outputs are the job's results. A stage
whose dependencies are done or skipped is *ready*, and ``Plan.decide`` says what becomes of it:

- ``Skip``: its analysis said no, or it is optional and none of its models is installed (then
  with a warning saying what the job lacks: notices.py); its input passes on as its output.
- ``Fail``: it is required and none of its models is installed.
- ``Dispatch``: it runs on its first installed model with its recipe's parameters plus those its
  analysis adds (and the output quality, for a final stage), on its dependencies' images (or the
  job's input), writing ``json`` (an analysis), the requested format (a final stage) or ``png``,
  over the slice of the job's progress that its weight gives it. A stage that runs on another model
  than its first (preferred) one says so in a warning (``fallback_warning``).

The job is ``Complete`` when every final stage is done or skipped. Also here: what each stage
charges its tier (``work_cost``) and what a finished job announces (``announcement``). What
follows a failed attempt is retries.py's decision.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from photocraft_common.contracts import Cancelled, Completed, Failed, ObjectRef, TaskDispatched, TaskOutput
from photocraft_common.jobs import JobRecord, JobStatus
from photocraft_common.keyring import Keyring
from photocraft_common.operations import MEGAPIXEL, JobParams, Stage, get_operation, parse_params
from photocraft_common.reuse import cache_key, output_id
from photocraft_common.tiers import LANE_COST, Lane, lane_of

from .notices import fallback_warning, missing_warning, warned
from .stages import State


def image_of(output: TaskOutput) -> ObjectRef:
    """The image a stage passes on: its first object that is not a mask. Raises StopIteration if none."""
    return next(ref for ref in output.objects if ref.role != "mask")


def passed_on(output: TaskOutput, inputs: list[ObjectRef]) -> TaskOutput:
    """A copy of ``output``; one without an image (an analysis, a skipped stage) gets ``inputs`` appended."""
    result = TaskOutput()
    result.CopyFrom(output)
    if not any(ref.role != "mask" for ref in result.objects):
        result.objects.extend(inputs)
    return result


def reused(cached: TaskOutput, inputs: list[ObjectRef], warning: str, model: str = "") -> TaskOutput:
    """An earlier identical stage's ``cached`` output (of ``model``), finishing a stage of this job: nothing
    computed for it."""
    output = warned(passed_on(cached, inputs), warning)
    output.compute_s, output.reused, output.model = 0.0, True, model or cached.model
    return output


def work_cost(record: JobRecord) -> int:
    """What each stage of the job charges its tier's deficit: its lane's cost, except that a batch's
    photos (all in the heavy lane) cost what the same photo alone would: it is the same work."""
    if not record.batch_id:
        return LANE_COST[Lane(record.lane)]
    megapixels = record.input.width * record.input.height / MEGAPIXEL if record.input else 0
    return LANE_COST[lane_of(record.operation, json.loads(record.params_json), megapixels, in_batch=False)]


def announcement(record: JobRecord) -> dict[str, Completed | Failed | Cancelled]:
    """The JobEvent field that a finished job announces, by its record's status: ``completed``
    (results, warnings), ``failed`` (code, message, stage) or ``cancelled`` (reason); {} before its end."""
    if record.status is JobStatus.COMPLETED:
        return {"completed": Completed(results=record.results, warnings=record.warnings)}
    if record.status is JobStatus.FAILED:
        return {"failed": Failed(code=record.error_code, message=record.error_message, stage=record.error_stage)}
    if record.status is JobStatus.CANCELLED:
        return {"cancelled": Cancelled(reason=record.error_message or "cancelled by the client")}
    return {}


def decision(stage: Stage, outputs: Mapping[str, TaskOutput]) -> tuple[bool, dict]:
    """Whether ``stage`` runs, and the parameters its analysis adds: the ``stages`` object of the
    ``decided_by`` stage's ``info_json`` (``{"<stage>": {"run": bool, "params": {...}}}``); a stage it
    does not name runs. Raises KeyError when the deciding stage has no output."""
    if not stage.decided_by:
        return True, {}
    plan = json.loads(outputs[stage.decided_by].info_json or "{}").get("stages", {})
    verdict = plan.get(stage.name, {"run": True})
    return bool(verdict.get("run")), verdict.get("params", {})


def installed_model(stage: Stage, available: set[str]) -> str | None:
    """The first of ``stage``'s models that is installed, or None."""
    return next((m for m in stage.models if m in available), None)


@dataclass(frozen=True)
class Skip:
    stage: str
    reason: str  # the warning for the client; "" when its analysis said no
    inputs: list[ObjectRef]

    @property
    def output(self) -> TaskOutput:
        """What the skipped stage passes on: its inputs, and the reason as a warning."""
        return TaskOutput(objects=self.inputs, warnings=[self.reason] if self.reason else [])


@dataclass(frozen=True)
class Fail:
    code: str
    message: str
    stage: str = ""


@dataclass(frozen=True)
class Dispatch:
    stage: str
    model: str
    params: dict  # as sent to the model, the output quality included for a final stage
    inputs: list[ObjectRef]
    extension: str  # "json", "png", "jpg" or "webp"
    progress_from: float  # percent of the job, 0-100
    progress_to: float
    warning: str = ""  # fallback_warning: said when it runs on another model than its preferred one

    def task(self, record: JobRecord, attempt: int, dispatched_at: Timestamp) -> TaskDispatched:
        return TaskDispatched(
            task_id=f"{record.job_id}/{self.stage}/{attempt}", job_id=record.job_id, tenant_id=record.tenant_id,
            stage=self.stage, model=self.model, params_json=json.dumps(self.params), inputs=self.inputs,
            output_format=self.extension, attempt=attempt, dispatched_at=dispatched_at,
            progress_from=self.progress_from, progress_to=self.progress_to,
        )

    def reuse_key(self, keyring: Keyring, tenant_id: str, weights: str) -> str | None:
        """Where the tenant's identical earlier result would be, given the model's ``weights`` digest
        (photocraft_common.reuse; under the tenant's prefix made with ``keyring``); None when an input has
        no content id."""
        if not all(ref.content_id for ref in self.inputs):
            return None
        result_id = output_id(self.model, weights, self.params, self.extension,
                              [ref.content_id for ref in self.inputs])
        return cache_key(keyring, tenant_id, self.model, result_id, self.extension)


@dataclass(frozen=True)
class Complete:
    results: list[ObjectRef]  # the final stages' objects, in recipe order
    warnings: list[str]  # "<stage>: <warning>" for every stage


@dataclass(frozen=True)
class Plan:
    """A job's parameters (validated), its stages in recipe order, the names of its final stages
    and its input image (None for an operation without one)."""

    params: JobParams
    stages: tuple[Stage, ...]
    final: frozenset[str]
    job_input: ObjectRef | None = None

    @classmethod
    def of(cls, record: JobRecord) -> Plan:
        """Raises UnknownOperation, or ValidationError for parameters the operation refuses."""
        params = parse_params(record.operation, record.params_json)
        stages = get_operation(record.operation).stages(params)
        final = frozenset({s.name for s in stages} - {n for s in stages for n in s.needs})
        return cls(params, stages, final, record.input)

    def stage(self, name: str) -> Stage:
        """Raises KeyError for a stage the recipe does not have."""
        return {s.name: s for s in self.stages}[name]

    @staticmethod
    def finished(states: Mapping[str, str]) -> set[str]:
        return {name for name, state in states.items() if state in (State.DONE, State.SKIPPED)}

    def is_complete(self, states: Mapping[str, str]) -> bool:
        return self.final <= self.finished(states)

    def ready(self, states: Mapping[str, str]) -> list[Stage]:
        """Stages not yet started whose dependencies are all done or skipped, in recipe order."""
        done = self.finished(states)
        return [s for s in self.stages if s.name not in states and set(s.needs) <= done]

    def inputs(self, stage: Stage, outputs: Mapping[str, TaskOutput]) -> list[ObjectRef]:
        """The images a stage works on: its dependencies' outputs, or the job's input.
        Raises KeyError when a dependency has no output."""
        return [image_of(outputs[n]) for n in stage.needs] or ([self.job_input] if self.job_input else [])

    def output_of(self, stage_name: str, output: TaskOutput, outputs: Mapping[str, TaskOutput],
                  model: str = "") -> TaskOutput:
        """What a finished stage records: its ``output`` (run on ``model``, which it names), passing its inputs
        on if it made no image, with ``fallback_warning``'s warning."""
        stage = self.stage(stage_name)
        recorded = warned(passed_on(output, self.inputs(stage, outputs)), fallback_warning(stage, model))
        recorded.model = recorded.model or model  # a worker's reused result names none
        return recorded

    def progress(self, stage: Stage, states: Mapping[str, str]) -> tuple[float, float]:
        """The slice of the job's progress (percent) that ``stage`` covers, after the finished stages."""
        done = self.finished(states)
        done_weight = sum(s.weight for s in self.stages if s.name in done)
        total = sum(s.weight for s in self.stages)
        return 100 * done_weight / total, 100 * (done_weight + stage.weight) / total

    def dispatch(self, stage: Stage, model: str, states: Mapping[str, str],
                 outputs: Mapping[str, TaskOutput]) -> Dispatch:
        """``stage`` sent to ``model``, whether or not its analysis lets it run."""
        fmt = self.params.output if stage.name in self.final else None
        extension = "json" if stage.name == "analyze" else (fmt.extension if fmt else "png")
        sent = {**stage.params, **decision(stage, outputs)[1], **({"quality": fmt.quality} if fmt else {})}
        return Dispatch(stage.name, model, sent, self.inputs(stage, outputs), extension,
                        *self.progress(stage, states), fallback_warning(stage, model))

    def decide(self, stage: Stage, states: Mapping[str, str], outputs: Mapping[str, TaskOutput],
               available: set[str]) -> Skip | Fail | Dispatch:
        """What becomes of a ready ``stage``, given the installed models ``available``."""
        run, _ = decision(stage, outputs)
        model = installed_model(stage, available)
        if not run or (model is None and stage.optional):
            reason = "" if not run else missing_warning(stage)
            return Skip(stage.name, reason, self.inputs(stage, outputs))
        if model is None:
            return Fail("model-unavailable", f"model {stage.models[0]} is not installed", stage.name)
        return self.dispatch(stage, model, states, outputs)

    def redispatch(self, stage_name: str, states: Mapping[str, str], outputs: Mapping[str, TaskOutput],
                   available: set[str]) -> Dispatch:
        """A failed stage once more: on its first installed model, else on its preferred one (whose
        task then waits for it). Raises KeyError for a stage the recipe does not have."""
        stage = self.stage(stage_name)
        return self.dispatch(stage, installed_model(stage, available) or stage.models[0], states, outputs)

    def completion(self, outputs: Mapping[str, TaskOutput]) -> Complete:
        """The job's results and warnings once every final stage has an output."""
        return Complete([ref for s in self.stages if s.name in self.final for ref in outputs[s.name].objects],
                        [f"{s.name}: {w}" for s in self.stages for w in outputs[s.name].warnings])
