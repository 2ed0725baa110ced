"""Job orchestration: each job is a dependency graph of stages, its operation's recipe.

After JobSubmitted and after every TaskResult the scheduler *advances* the
job: each stage whose dependencies are done is skipped (its analysis said
no, or it is optional and no model for it is installed: its input passes
on), reused (an identical result exists, see reuse below), or queued for its
model in the fair-share queue (fairshare.py), which releases it to the
model's topic when the model has a free credit and the tier's turn has come.
When every final stage is done the job completes; a stage that fails with a
retryable error is queued again alone, after an exponential backoff with
jitter, up to ``max_attempts``; after that, or on a final error, the job
fails naming the stage. Completed stages never run again. A cancelled job's
waiting stages are dropped when their turn comes, and a running stage's
result is discarded.

Reuse: a stage's result is addressed by a digest of the model (weights and
code), the stage's parameters, the output format and the content ids of its
inputs (see photocraft_common.reuse). A later job of the same tenant that
needs the same result finds its manifest and skips the work, here before
queueing when the model's digest is known, else in the worker.

State lives in Redis next to the job record:

    photocraft:job:<id>:stages   stage -> "queued:<attempt>" | "dispatched:<attempt>" | "done" | "skipped"
    photocraft:job:<id>:outputs  stage -> TaskOutput (protobuf bytes)

Every step is idempotent, so a message delivered twice changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from photocraft_common.batches import BatchStore
from photocraft_common.contracts import (
    BatchProgress,
    Cancelled,
    Completed,
    Failed,
    JobSubmitted,
    ObjectRef,
    Queued,
    Retrying,
    StageCompleted,
    TaskDispatched,
    TaskOutput,
    TaskResult,
    now,
    parse,
)
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import TERMINAL, JobRecord, JobStatus, JobStore, job_key
from photocraft_common.kafka import publish
from photocraft_common.models import ModelDirectory
from photocraft_common.operations import MEGAPIXEL, MODELS, Stage, UnknownOperation, get_operation, parse_params
from photocraft_common.reuse import cache_key, output_id
from photocraft_common.storage import ObjectStore, sibling_key
from photocraft_common.tiers import LANE_COST, Lane, lane_of
from photocraft_common.topics import model_topic

from .fairshare import FairShare, Picked
from .settings import SchedulerSettings

log = logging.getLogger("photocraft.scheduler")

DONE, SKIPPED = "done", "skipped"


def image_of(output: TaskOutput) -> ObjectRef:
    """The image a stage passes on: its first object that is not a mask."""
    return next(ref for ref in output.objects if ref.role != "mask")


def work_cost(record: JobRecord) -> int:
    """What each stage of the job charges its tier's deficit: its lane's cost, except that a batch's
    photos (all in the heavy lane) cost what the same photo alone would: it is the same work."""
    if not record.batch_id:
        return LANE_COST[Lane(record.lane)]
    megapixels = record.input.width * record.input.height / MEGAPIXEL if record.input else 0
    return LANE_COST[lane_of(record.operation, json.loads(record.params_json), megapixels, in_batch=False)]


class Scheduler:
    def __init__(self, broker: KafkaBroker, redis: Redis, store: ObjectStore, settings: SchedulerSettings) -> None:
        self._broker = broker
        self._redis = redis
        self._store = store
        self._settings = settings
        self._ttl_s = settings.job_ttl_s
        self.jobs = JobStore(redis, settings.job_ttl_s)
        self.batches = BatchStore(redis, settings.job_ttl_s)
        self.events = EventPublisher(broker)
        self.models = ModelDirectory(redis)
        self.queue = FairShare(redis, settings.tiers)

    # ---- messages -----------------------------------------------------------------------------

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
        first_model = self._stages(record)[0].models[0]
        position = await self.queue.waiting(first_model, record.tier)
        await self.events.emit(job.job_id, job.tenant_id, once="queued",
                               queued=Queued(lane=record.lane, position=position))
        await self._advance(record)

    async def on_cancelled(self, job_id: str) -> None:
        record = await self.jobs.get(job_id)
        if record is not None and record.status is JobStatus.CANCELLED:
            await self._announce_end(record)

    async def on_result(self, result: TaskResult) -> None:
        await self.queue.finish(result.task_id)
        try:
            record = await self.jobs.get(result.job_id)
            if record is None:
                log.warning("result for unknown job %s dropped", result.job_id)
                return
            if record.status in TERMINAL:
                return await self._announce_end(record)
            state = await self._redis.hget(self._key(record, "stages"), result.stage)
            if state is None or state.decode().split(":")[-1] != str(result.attempt):
                log.info("stale result %s (attempt %d; stage is %s) ignored", result.task_id, result.attempt, state)
                return
            if result.WhichOneof("outcome") == "error":
                return await self._failed_attempt(record, result.stage, result.attempt, result.error.code,
                                                  result.error.message, result.error.retryable)
            outputs = await self._outputs(record)
            stage = next(s for s in self._stages(record) if s.name == result.stage)
            await self._finish_stage(record, result.stage, result.output, self._inputs(record, stage, outputs))
            await self._advance(record)
        finally:
            await self.pump(result.model)

    # ---- the fair-share queue ----------------------------------------------------------------

    async def pump(self, model: str) -> None:
        """Release ``model``'s stages while it has free credits, in fair-share order."""
        while (picked := await self.queue.pick(model)) is not None:
            await self._release(picked)

    async def _release(self, picked: Picked) -> None:
        queue_id, task = picked.task_id, parse(TaskDispatched, picked.payload)
        record = await self.jobs.get(task.job_id)
        if record is None or record.status in TERMINAL:  # cancelled while it waited
            await self.queue.finish(queue_id)
            return
        await self._set_state(record, task.stage, f"dispatched:{task.attempt}")
        await publish(self._broker, model_topic(task.model), task, partition=picked.partition)
        await self.queue.confirm(queue_id)
        log.info("job %s: %s (attempt %d) released to %s", task.job_id, task.stage, task.attempt,
                 model_topic(task.model))

    async def tick(self, check_overdue: bool) -> None:
        """Periodic work: retries whose delay is over, claims of dead replicas, overdue tasks,
        and models whose workers have come back."""
        await self.queue.release_due()
        for picked in await self.queue.abandoned_claims():
            log.warning("republishing %s: its publisher did not confirm it", picked.task_id)
            await self._release(picked)
        if check_overdue:
            for queue_id in await self.queue.overdue(self._settings.task_timeout_s):
                await self._overdue(queue_id)
        for model in MODELS:
            await self.pump(model)

    async def _overdue(self, queue_id: str) -> None:
        """A task out for too long (its worker lost it): a failed, retryable attempt."""
        job_id, stage, attempt = queue_id.rsplit("/", 2)
        await self.queue.finish(queue_id)
        record = await self.jobs.get(job_id)
        if record is not None and record.status not in TERMINAL:
            await self._failed_attempt(record, stage, int(attempt), "timeout",
                                       f"no result after {self._settings.task_timeout_s:.0f} s", retryable=True)

    # ---- stages ------------------------------------------------------------------------------

    @staticmethod
    def _plan(record: JobRecord):
        """The job's parameters, its stages, and the names of its final stages."""
        params = parse_params(record.operation, record.params_json)
        stages = get_operation(record.operation).stages(params)
        return params, stages, {s.name for s in stages} - {n for s in stages for n in s.needs}

    def _stages(self, record: JobRecord) -> tuple[Stage, ...]:
        return self._plan(record)[1]

    async def _states(self, record: JobRecord) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in (await self._redis.hgetall(self._key(record, "stages"))).items()}

    @staticmethod
    def _inputs(record: JobRecord, stage: Stage, outputs: dict[str, TaskOutput]) -> list[ObjectRef]:
        """The images a stage works on: its dependencies' outputs, or the job's input."""
        return [image_of(outputs[n]) for n in stage.needs] or ([record.input] if record.input else [])

    async def _advance(self, record: JobRecord) -> None:
        params, stages, final = self._plan(record)
        while True:
            states = await self._states(record)
            done = {name for name, state in states.items() if state in (DONE, SKIPPED)}
            if final <= done:
                return await self._complete(record, stages, final)
            ready = [s for s in stages if s.name not in states and set(s.needs) <= done]
            if not ready:
                break
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
                    await self._queue_stage(record, stage, model, {**stage.params, **extra}, inputs, fmt,
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

    async def _queue_stage(self, record: JobRecord, stage: Stage, model: str, params: dict,
                           inputs: list[ObjectRef], fmt, stages: tuple[Stage, ...], states: dict,
                           attempt: int = 1, delay_s: float = 0.0) -> None:
        extension = "json" if stage.name == "analyze" else (fmt.extension if fmt else "png")
        sent = {**params, **({"quality": fmt.quality} if fmt else {})}
        if attempt == 1 and await self._reused(record, stage, model, sent, extension, inputs):
            return
        done_weight = sum(s.weight for s in stages if states.get(s.name) in (DONE, SKIPPED))
        total = sum(s.weight for s in stages)
        task = TaskDispatched(
            task_id=f"{record.job_id}/{stage.name}/{attempt}", job_id=record.job_id, tenant_id=record.tenant_id,
            stage=stage.name, model=model, params_json=json.dumps(sent), inputs=inputs,
            output_format=extension, attempt=attempt, dispatched_at=now(),
            progress_from=100 * done_weight / total, progress_to=100 * (done_weight + stage.weight) / total,
        )
        if not self._settings.fair_share:  # FIFO: Kafka's order, no credits
            await self._set_state(record, stage.name, f"dispatched:{attempt}")
            if delay_s:
                await asyncio.sleep(delay_s)
            return await publish(self._broker, model_topic(model), task)
        # Recorded before queueing, so the stage is never queued twice for one attempt.
        await self._set_state(record, stage.name, f"queued:{attempt}")
        await self.queue.enqueue(task.task_id, task.SerializeToString(), model, record.tier, record.tenant_id,
                                 work_cost(record), delay_s)
        if not delay_s:
            await self.pump(model)

    async def _failed_attempt(self, record: JobRecord, stage_name: str, attempt: int, code: str, message: str,
                              retryable: bool) -> None:
        if not retryable or attempt >= self._settings.max_attempts:
            return await self._fail(record, code, message, stage_name)
        delay = min(self._settings.retry_max_s, self._settings.retry_base_s * 2 ** (attempt - 1))
        delay *= random.uniform(0.5, 1.0)  # jitter: retries of many jobs do not come back together
        log.info("job %s: %s failed (%s: %s); attempt %d in %.1f s", record.job_id, stage_name, code, message,
                 attempt + 1, delay)
        await self.events.emit(record.job_id, record.tenant_id, once=f"{stage_name}:retry:{attempt + 1}",
                               retrying=Retrying(stage=stage_name, attempt=attempt + 1, delay_s=delay,
                                                 max_attempts=self._settings.max_attempts,
                                                 reason=f"{code}: {message}"))
        params, stages, final = self._plan(record)
        stage = next(s for s in stages if s.name == stage_name)
        outputs = await self._outputs(record)
        available = await self.models.available()
        model = next((m for m in stage.models if m in available), stage.models[0])
        await self._queue_stage(record, stage, model, {**stage.params, **self._decision(stage, outputs)[1]},
                                self._inputs(record, stage, outputs), params.output if stage_name in final else None,
                                stages, await self._states(record), attempt + 1, delay)

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

    # ---- the end ---------------------------------------------------------------------------

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
        """(Re-)publish a finished job's terminal event, and count it in its batch; the event's
        id and the batch's set of ended jobs make repeats harmless."""
        if record.status is JobStatus.COMPLETED:
            await self.events.emit(record.job_id, record.tenant_id, once="end", completed=Completed(
                results=record.results, warnings=record.warnings))
        elif record.status is JobStatus.FAILED:
            await self.events.emit(record.job_id, record.tenant_id, once="end", failed=Failed(
                code=record.error_code, message=record.error_message, stage=record.error_stage))
        elif record.status is JobStatus.CANCELLED:
            await self.events.emit(record.job_id, record.tenant_id, once="end",
                                   cancelled=Cancelled(reason=record.error_message or "cancelled by the client"))
        if record.batch_id:
            batch = await self.batches.job_ended(record.batch_id, record.job_id,
                                                 record.status is JobStatus.COMPLETED)
            if batch is not None:
                ended = batch.done + batch.failed
                await self.events.emit(batch.batch_id, batch.tenant_id, once=f"progress:{ended}",
                                       batch_progress=BatchProgress(done=batch.done, failed=batch.failed,
                                                                    total=batch.total))

    async def _outputs(self, record: JobRecord) -> dict[str, TaskOutput]:
        raw = await self._redis.hgetall(self._key(record, "outputs"))
        return {name.decode(): TaskOutput.FromString(data) for name, data in raw.items()}

    @staticmethod
    def _key(record: JobRecord, suffix: str) -> str:
        return f"{job_key(record.job_id)}:{suffix}"
