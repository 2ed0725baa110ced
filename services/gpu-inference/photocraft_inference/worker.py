"""Running one TaskDispatched: input from S3, the model on Triton, output to S3.

The TaskResult is published only after the output is durable in S3, and the
consumer offset is committed only after that (by the subscriber's ack
policy). A worker that dies mid-task leaves its offset uncommitted, so the
task is delivered again to whichever worker takes over the partition.
"""

from __future__ import annotations

import asyncio
import logging
import time

from faststream.kafka import KafkaBroker

from photocraft_common.contracts import (
    Progress,
    Started,
    TaskDispatched,
    TaskError,
    TaskOutput,
    TaskResult,
    now,
)
from photocraft_common.events import EventPublisher
from photocraft_common.images import InvalidImage, decode_rgb, encode_png
from photocraft_common.kafka import publish
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import TASK_RESULTS

from .stages import RUNNERS
from .triton import ModelUnavailable, Triton

log = logging.getLogger("photocraft.inference.worker")


class Worker:
    def __init__(self, broker: KafkaBroker, store: ObjectStore, triton: Triton, worker_id: str) -> None:
        self._broker = broker
        self._store = store
        self._triton = triton
        self._events = EventPublisher(broker)
        self.worker_id = worker_id

    async def handle(self, task: TaskDispatched) -> TaskResult:
        """Run ``task`` and publish its TaskResult.

        Every error of the stage ends in a failed TaskResult: bad input and
        unloadable models are final, anything else (storage down, a bug) is
        marked retryable. Only a failure to publish the result propagates, so
        that the task is consumed again.
        """
        started = time.monotonic()
        log.info("task %s (attempt %d) on %s", task.task_id, task.attempt, task.model)
        await self._events.emit(task.job_id, task.tenant_id,
                                started=Started(stage=task.stage, worker_id=self.worker_id))
        result = TaskResult(task_id=task.task_id, job_id=task.job_id, stage=task.stage,
                            model=task.model, attempt=task.attempt, worker_id=self.worker_id)
        try:
            result.output.CopyFrom(await self._run(task))
        except InvalidImage as exc:
            result.error.CopyFrom(TaskError(code="invalid-image", message=str(exc)))
        except ModelUnavailable as exc:
            result.error.CopyFrom(TaskError(code="model-unavailable", message=str(exc)))
        except Exception as exc:
            log.exception("task %s failed", task.task_id)
            result.error.CopyFrom(TaskError(code="internal-error", message=repr(exc), retryable=True))
        result.duration_ms = int((time.monotonic() - started) * 1000)
        result.finished_at.CopyFrom(now())
        await publish(self._broker, TASK_RESULTS, result)
        log.info("task %s %s in %d ms", task.task_id, result.WhichOneof("outcome"), result.duration_ms)
        return result

    async def _run(self, task: TaskDispatched) -> TaskOutput:
        runner = RUNNERS.get(task.model)
        if runner is None:
            raise ModelUnavailable(f"this worker has no runner for model {task.model!r}")

        async def progress(fraction: float, message: str) -> None:
            percent = task.progress_from + fraction * (task.progress_to - task.progress_from)
            await self._events.emit(task.job_id, task.tenant_id, progress=Progress(
                stage=task.stage, percent=round(percent, 1), message=message))

        data = await self._store.get(task.inputs[0])
        pixels = await asyncio.to_thread(decode_rgb, data)
        await progress(0.1, "image decoded")
        output = await runner(pixels, self._triton, progress)
        png = await asyncio.to_thread(encode_png, output)
        height, width = output.shape[:2]
        ref = await self._store.put(task.output_key, png, "image/png", width, height)
        await progress(0.95, "result stored")
        return TaskOutput(objects=[ref])
