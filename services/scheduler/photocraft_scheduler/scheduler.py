"""Job orchestration: each job is a dependency graph of stages (its operation's recipe).

On JobSubmitted the scheduler dispatches the stages that need nothing to
their models' topics. On each TaskResult it records the stage's output and
dispatches the stages that have become ready, until the final stages are done
(the job completes) or a stage fails (the job fails, naming the stage).

State lives in Redis, next to the job record:

    photocraft:job:<id>:stages   stage -> "dispatched" | "done"
    photocraft:job:<id>:outputs  stage -> ObjectRef (protobuf bytes)

Every step is idempotent, so a message delivered twice (after a crash, before
its offset was committed) changes nothing the second time.
"""

from __future__ import annotations

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
    TaskResult,
    now,
)
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import TERMINAL, JobRecord, JobStatus, JobStore, job_key
from photocraft_common.kafka import publish
from photocraft_common.operations import Operation, Stage, UnknownOperation, get_operation
from photocraft_common.storage import stage_key
from photocraft_common.topics import model_topic

log = logging.getLogger("photocraft.scheduler")

DISPATCHED, DONE = b"dispatched", b"done"


class Scheduler:
    def __init__(self, broker: KafkaBroker, redis: Redis, job_ttl_s: int) -> None:
        self._broker = broker
        self._redis = redis
        self._ttl_s = job_ttl_s
        self.jobs = JobStore(redis, job_ttl_s)
        self.events = EventPublisher(broker)

    async def on_submitted(self, job: JobSubmitted) -> None:
        record = await self.jobs.get(job.job_id)
        if record is None:
            log.warning("job %s has no record (expired or never created); dropped", job.job_id)
            return
        if record.status in TERMINAL:
            return await self._announce_end(record)
        try:
            operation = get_operation(job.operation)
        except UnknownOperation as exc:
            return await self._fail(record, "unknown-operation", str(exc))
        await self.events.emit(job.job_id, job.tenant_id, once="queued", queued=Queued(lane="default"))
        await self._dispatch_ready(record, operation)

    async def on_result(self, result: TaskResult) -> None:
        record = await self.jobs.get(result.job_id)
        if record is None:
            log.warning("result for unknown job %s dropped", result.job_id)
            return
        if record.status in TERMINAL:
            return await self._announce_end(record)
        if result.WhichOneof("outcome") == "error":
            return await self._fail(record, result.error.code, result.error.message, result.stage)

        operation = get_operation(record.operation)
        output = result.output.objects[0]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._outputs_key(record.job_id), result.stage, output.SerializeToString())
            pipe.hset(self._stages_key(record.job_id), result.stage, DONE)
            await pipe.execute()
        await self.events.emit(record.job_id, record.tenant_id, once=f"{result.stage}:done",
                               stage_completed=StageCompleted(stage=result.stage, output=output))

        outputs = await self._outputs(record.job_id)
        finals = operation.final_stages()
        if all(stage.name in outputs for stage in finals):
            results = [outputs[stage.name] for stage in finals]
            await self.jobs.set_status(record.job_id, JobStatus.COMPLETED, results=results)
            await self._announce_end(await self.jobs.get(record.job_id))
        else:
            await self._dispatch_ready(record, operation)

    async def _dispatch_ready(self, record: JobRecord, operation: Operation) -> None:
        states = await self._redis.hgetall(self._stages_key(record.job_id))
        done = {name.decode() for name, state in states.items() if state == DONE}
        started = {name.decode() for name in states}
        outputs = await self._outputs(record.job_id)
        for stage in operation.ready_stages(done, started):
            inputs = [outputs[name] for name in stage.needs] or [record.input]
            await self._dispatch(record, operation, stage, inputs)
        await self.jobs.set_status(record.job_id, JobStatus.RUNNING)

    async def _dispatch(self, record: JobRecord, operation: Operation, stage: Stage,
                        inputs: list[ObjectRef]) -> None:
        index = operation.stages.index(stage)
        share = 100.0 / len(operation.stages)
        task = TaskDispatched(
            task_id=f"{record.job_id}/{stage.name}", job_id=record.job_id,
            tenant_id=record.tenant_id, stage=stage.name, model=stage.model,
            params_json=record.params_json, inputs=inputs,
            output_key=stage_key(record.tenant_id, record.job_id, stage.name, "png"),
            attempt=1, dispatched_at=now(),
            progress_from=index * share, progress_to=(index + 1) * share,
        )
        # Publish before recording, so a crash in between re-dispatches (at least once).
        await publish(self._broker, model_topic(stage.model), task)
        key = self._stages_key(record.job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, stage.name, DISPATCHED)
            pipe.expire(key, self._ttl_s)
            pipe.expire(self._outputs_key(record.job_id), self._ttl_s)
            await pipe.execute()
        log.info("job %s: dispatched %s to %s", record.job_id, stage.name, model_topic(stage.model))

    async def _fail(self, record: JobRecord, code: str, message: str, stage: str = "") -> None:
        log.info("job %s failed at %r: %s %s", record.job_id, stage, code, message)
        await self.jobs.set_status(record.job_id, JobStatus.FAILED, error_code=code,
                                   error_message=f"{stage}: {message}" if stage else message)
        await self._announce_end(await self.jobs.get(record.job_id))

    async def _announce_end(self, record: JobRecord) -> None:
        """(Re-)publish a finished job's terminal event; its id makes repeats harmless."""
        if record.status is JobStatus.COMPLETED:
            await self.events.emit(record.job_id, record.tenant_id, once="end",
                                   completed=Completed(results=record.results))
        elif record.status is JobStatus.FAILED:
            await self.events.emit(record.job_id, record.tenant_id, once="end",
                                   failed=Failed(code=record.error_code, message=record.error_message))

    async def _outputs(self, job_id: str) -> dict[str, ObjectRef]:
        raw = await self._redis.hgetall(self._outputs_key(job_id))
        return {name.decode(): ObjectRef.FromString(data) for name, data in raw.items()}

    @staticmethod
    def _stages_key(job_id: str) -> str:
        return f"{job_key(job_id)}:stages"

    @staticmethod
    def _outputs_key(job_id: str) -> str:
        return f"{job_key(job_id)}:outputs"
