"""Job orchestration: each job is a dependency graph of stages, its operation's recipe.

After JobSubmitted and after every TaskResult the scheduler *advances* the
job: each stage whose dependencies are done is skipped (its analysis said
no, or it is optional and no model for it is installed: its output is its
input), reused (the same model, weights, parameters and input produced a
result before: see below), or dispatched to its model's topic. When every
final stage is done the job completes; when a stage fails the job fails,
naming it.

Reuse: a stage's result is addressed by a digest of the model (weights and
code), the stage's parameters, the output format and the content ids of its
inputs (an upload's id is the sha256 of its bytes; see photocraft_common.reuse).
Workers store results under ``<tenant>/cache/<model>/<id>.*`` with a manifest
(``.manifest.json``) written last; a later job of the same tenant that needs
the same result finds the manifest and skips the work, here before
dispatching when the model's digest is known, else in the worker.

State lives in Redis next to the job record:

    photocraft:job:<id>:stages   stage -> "dispatched" | "done" | "skipped"
    photocraft:job:<id>:outputs  stage -> TaskOutput (protobuf bytes)

Every step is idempotent, so a message delivered twice changes nothing.
"""

from __future__ import annotations

import json
import logging

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from photocraft_common.contracts import (
    Completed,
    Failed,
    JobSubmitted,
    ObjectRef,
    Queued,
    StageCompleted,
    TaskDispatched,
    TaskOutput,
    TaskResult,
    now,
)
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import TERMINAL, JobRecord, JobStatus, JobStore, job_key
from photocraft_common.kafka import publish
from photocraft_common.models import ModelDirectory
from photocraft_common.operations import Stage, UnknownOperation, get_operation, parse_params
from photocraft_common.reuse import cache_key, output_id
from photocraft_common.storage import ObjectStore, sibling_key
from photocraft_common.topics import model_topic

log = logging.getLogger("photocraft.scheduler")

DISPATCHED, DONE, SKIPPED = "dispatched", "done", "skipped"


def image_of(output: TaskOutput) -> ObjectRef:
    """The image a stage passes on: its first object that is not a mask."""
    return next(ref for ref in output.objects if ref.role != "mask")


class Scheduler:
    def __init__(self, broker: KafkaBroker, redis: Redis, store: ObjectStore, job_ttl_s: int) -> None:
        self._broker = broker
        self._redis = redis
        self._store = store
        self._ttl_s = job_ttl_s
        self.jobs = JobStore(redis, job_ttl_s)
        self.events = EventPublisher(broker)
        self.models = ModelDirectory(redis)

    async def on_submitted(self, job: JobSubmitted) -> None:
        record = await self.jobs.get(job.job_id)
        if record is None:
            log.warning("job %s has no record (expired or never created); dropped", job.job_id)
            return
        if record.status in TERMINAL:
            return await self._announce_end(record)
        try:
            get_operation(record.operation)
        except UnknownOperation as exc:
            return await self._fail(record, "unknown-operation", str(exc))
        await self.events.emit(job.job_id, job.tenant_id, once="queued", queued=Queued(lane="default"))
        await self._advance(record)

    async def on_result(self, result: TaskResult) -> None:
        record = await self.jobs.get(result.job_id)
        if record is None:
            log.warning("result for unknown job %s dropped", result.job_id)
            return
        if record.status in TERMINAL:
            return await self._announce_end(record)
        if result.WhichOneof("outcome") == "error":
            return await self._fail(record, result.error.code, result.error.message, result.stage)
        outputs = await self._outputs(record)
        stage = next(s for s in self._stages(record) if s.name == result.stage)
        await self._finish_stage(record, result.stage, result.output, self._inputs(record, stage, outputs))
        await self._advance(record)

    @staticmethod
    def _stages(record: JobRecord) -> tuple[Stage, ...]:
        return get_operation(record.operation).stages(parse_params(record.operation, record.params_json))

    @staticmethod
    def _inputs(record: JobRecord, stage: Stage, outputs: dict[str, TaskOutput]) -> list[ObjectRef]:
        """The images a stage works on: its dependencies' outputs, or the job's input."""
        return [image_of(outputs[n]) for n in stage.needs] or ([record.input] if record.input else [])

    async def _advance(self, record: JobRecord) -> None:
        params = parse_params(record.operation, record.params_json)
        stages = self._stages(record)
        final = {s.name for s in stages} - {n for s in stages for n in s.needs}
        while True:
            states = {k.decode(): v.decode() for k, v in
                      (await self._redis.hgetall(self._key(record, "stages"))).items()}
            done = {name for name, state in states.items() if state in (DONE, SKIPPED)}
            if final <= done:
                return await self._complete(record, stages, final)
            ready = [s for s in stages if s.name not in states and set(s.needs) <= done]
            if not ready:
                return
            outputs = await self._outputs(record)
            available = await self.models.available()
            for stage in ready:
                inputs = self._inputs(record, stage, outputs)
                run, extra = self._decision(stage, outputs)
                model = next((m for m in stage.models if m in available), None)
                if not run or (model is None and stage.optional):
                    reason = "" if not run else f"skipped: model {stage.models[0]} is not installed"
                    await self._finish_stage(record, stage.name, TaskOutput(warnings=[reason] if reason else []),
                                             inputs, SKIPPED)
                elif model is None:
                    return await self._fail(record, "model-unavailable",
                                            f"model {stage.models[0]} is not installed", stage.name)
                else:
                    fmt = params.output if stage.name in final else None
                    await self._dispatch(record, stage, model, {**stage.params, **extra}, inputs, fmt,
                                         stages, states)
            await self.jobs.set_status(record.job_id, JobStatus.RUNNING)

    @staticmethod
    def _decision(stage: Stage, outputs: dict[str, TaskOutput]) -> tuple[bool, dict]:
        """Whether ``stage`` runs, and the parameters its analysis adds."""
        if not stage.decided_by:
            return True, {}
        plan = json.loads(outputs[stage.decided_by].info_json or "{}").get("stages", {})
        decision = plan.get(stage.name, {"run": True})
        return bool(decision.get("run")), decision.get("params", {})

    async def _dispatch(self, record: JobRecord, stage: Stage, model: str, params: dict,
                        inputs: list[ObjectRef], fmt, stages: tuple[Stage, ...], states: dict) -> None:
        extension = "json" if stage.name == "analyze" else (fmt.extension if fmt else "png")
        sent = {**params, **({"quality": fmt.quality} if fmt else {})}
        if await self._reused(record, stage, model, sent, extension, inputs):
            return
        done_weight = sum(s.weight for s in stages if states.get(s.name) in (DONE, SKIPPED))
        total = sum(s.weight for s in stages)
        task = TaskDispatched(
            task_id=f"{record.job_id}/{stage.name}", job_id=record.job_id, tenant_id=record.tenant_id,
            stage=stage.name, model=model, params_json=json.dumps(sent), inputs=inputs,
            output_format=extension, attempt=1, dispatched_at=now(),
            progress_from=100 * done_weight / total, progress_to=100 * (done_weight + stage.weight) / total,
        )
        # Publish before recording, so a crash in between re-dispatches (at least once).
        await publish(self._broker, model_topic(model), task)
        await self._set_state(record, stage.name, DISPATCHED)
        log.info("job %s: dispatched %s to %s", record.job_id, stage.name, model_topic(model))

    async def _reused(self, record: JobRecord, stage: Stage, model: str, params: dict, extension: str,
                      inputs: list[ObjectRef]) -> bool:
        """Finish ``stage`` with an earlier job's identical result, if one is known to exist.

        Needs the model's weights digest, which a worker records when it loads the model;
        without it the worker itself checks for a reusable result before computing.
        """
        weights = await self.models.weights(model)
        if not weights or not all(ref.content_id for ref in inputs):
            return False
        result_id = output_id(model, weights, params, extension, [ref.content_id for ref in inputs])
        key = cache_key(record.tenant_id, model, result_id, extension)
        cached = await self._store.read_manifest(key)
        if cached is None or not await self._store.touch(
                [sibling_key(key, "manifest.json")] + [ref.key for ref in cached.objects if "/cache/" in ref.key]):
            return False
        log.info("job %s: %s reused from %s", record.job_id, stage.name, key)
        await self._finish_stage(record, stage.name, cached, inputs)
        return True

    async def _finish_stage(self, record: JobRecord, stage: str, output: TaskOutput,
                            inputs: list[ObjectRef], state: str = DONE) -> None:
        """Record ``stage``'s output; one without an image (an analysis, a skipped stage)
        passes the stage's ``inputs`` on."""
        if not any(ref.role != "mask" for ref in output.objects):
            output.objects.extend(inputs)
        await self._redis.hset(self._key(record, "outputs"), stage, output.SerializeToString())
        await self._set_state(record, stage, state)
        if state == DONE:
            await self.events.emit(record.job_id, record.tenant_id, once=f"{stage}:done",
                                   stage_completed=StageCompleted(stage=stage, output=image_of(output)))

    async def _set_state(self, record: JobRecord, stage: str, state: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(record, "stages"), stage, state)
            for suffix in ("stages", "outputs"):
                pipe.expire(self._key(record, suffix), self._ttl_s)
            await pipe.execute()

    async def _complete(self, record: JobRecord, stages: tuple[Stage, ...], final: set[str]) -> None:
        outputs = await self._outputs(record)
        results = [ref for s in stages if s.name in final for ref in outputs[s.name].objects]
        warnings = [f"{s.name}: {w}" for s in stages for w in outputs[s.name].warnings]
        await self.jobs.set_status(record.job_id, JobStatus.COMPLETED, results=results, warnings=warnings)
        await self._announce_end(await self.jobs.get(record.job_id))

    async def _fail(self, record: JobRecord, code: str, message: str, stage: str = "") -> None:
        log.info("job %s failed at %r: %s %s", record.job_id, stage, code, message)
        await self.jobs.set_status(record.job_id, JobStatus.FAILED, error_code=code,
                                   error_message=message, error_stage=stage)
        await self._announce_end(await self.jobs.get(record.job_id))

    async def _announce_end(self, record: JobRecord) -> None:
        """(Re-)publish a finished job's terminal event; its id makes repeats harmless."""
        if record.status is JobStatus.COMPLETED:
            await self.events.emit(record.job_id, record.tenant_id, once="end", completed=Completed(
                results=record.results, warnings=record.warnings))
        elif record.status is JobStatus.FAILED:
            await self.events.emit(record.job_id, record.tenant_id, once="end", failed=Failed(
                code=record.error_code, message=record.error_message, stage=record.error_stage))

    async def _outputs(self, record: JobRecord) -> dict[str, TaskOutput]:
        raw = await self._redis.hgetall(self._key(record, "outputs"))
        return {name.decode(): TaskOutput.FromString(data) for name, data in raw.items()}

    @staticmethod
    def _key(record: JobRecord, suffix: str) -> str:
        return f"{job_key(record.job_id)}:{suffix}"
