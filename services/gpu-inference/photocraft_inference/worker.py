"""Running one TaskDispatched: input from S3, the model on Triton, output to S3.

The result's address comes from the loaded model's weights digest, the
parameters and the inputs' content ids (photocraft_common.reuse); if an
earlier job stored that result, it is reused (the input is fetched meanwhile,
in case it is not). Otherwise the stage's objects are written first (the image
and its mask, if the model makes one, at once), then its manifest, then the
TaskResult is published; the task's events (started, progress) go out in order
beside the work, all of them before the TaskResult. A filter whose parameters leave the photo as it is
(photocraft_common.no_ops: restore's closing tone stage at 0, which only writes the requested format) is
not sent to Triton. The consumer offset is
committed only after that (by the subscriber's ack policy). A worker that
dies mid-task leaves its offset uncommitted, so the task is delivered again
to whichever worker takes over the partition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from contextlib import nullcontext

from faststream.kafka import KafkaBroker
from opentelemetry import trace

from photocraft_common.contracts import (
    ObjectRef,
    Progress,
    Started,
    TaskDispatched,
    TaskError,
    TaskOutput,
    TaskResult,
    now,
)
from photocraft_common.events import EventPublisher, OrderedEvents
from photocraft_common.images import FORMATS, InvalidImage, decode, encode
from photocraft_common.kafka import publish
from photocraft_common.keyring import Keyring
from photocraft_common.reuse import cache_key, output_id
from photocraft_common.storage import ObjectStore, sibling_key, stage_key
from photocraft_common.topics import TASK_RESULTS

from .compute import computing
from .metrics import step
from .residency import ModelTooLarge
from .runners import RUNNERS, Produced, unchanged, unchanging
from .triton import InvalidStageInput, ModelUnavailable, TritonPool

log = logging.getLogger("photocraft.inference.worker")

# Exceptions that end a task for good, and the error code the client sees.
FINAL_ERRORS = {InvalidImage: "invalid-image", InvalidStageInput: "invalid-input",
                ModelUnavailable: "model-unavailable", ModelTooLarge: "model-too-large"}


class Worker:
    def __init__(self, broker: KafkaBroker, store: ObjectStore, triton: TritonPool, worker_id: str,
                 keyring: Keyring) -> None:
        self._broker = broker
        self._store = store
        self._keyring = keyring  # results go under the tenant's opaque prefix (storage.tenant_prefix)
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
        log.info("task %s on %s", task.task_id, task.model)
        result = TaskResult(task_id=task.task_id, job_id=task.job_id, stage=task.stage,
                            model=task.model, attempt=task.attempt, worker_id=self.worker_id)
        events = OrderedEvents(self._events)
        try:
            result.output.CopyFrom(await self._run(task, events))
        except tuple(FINAL_ERRORS) as exc:
            code = next(c for kind, c in FINAL_ERRORS.items() if isinstance(exc, kind))
            result.error.CopyFrom(TaskError(code=code, message=str(exc)))
        except Exception as exc:
            log.exception("task %s failed", task.task_id)
            result.error.CopyFrom(TaskError(code="internal-error", message=repr(exc), retryable=True))
        if result.HasField("error"):
            await _settle(events, task)  # the failure's events stay before it too
        result.duration_ms = int((time.monotonic() - started) * 1000)
        result.finished_at.CopyFrom(now())
        await publish(self._broker, TASK_RESULTS, result)
        log.info("task %s %s in %d ms", task.task_id, result.WhichOneof("outcome"), result.duration_ms)
        return result

    async def _run(self, task: TaskDispatched, events: OrderedEvents) -> TaskOutput:
        async def progress(fraction: float, message: str) -> None:
            percent = task.progress_from + fraction * (task.progress_to - task.progress_from)
            events.emit(task.job_id, task.tenant_id, progress=Progress(
                stage=task.stage, percent=round(percent, 1), message=message))

        config = await self._triton.config(task.model)
        parameters = config["parameters"]
        params = json.loads(task.params_json or "{}")
        key, result_id = self._address(task, parameters["photocraft.weights"]["string_value"], params)
        fetch = asyncio.ensure_future(self._fetch(task)) if task.inputs else None  # meanwhile
        if fetch is not None:  # its error is raised by the await below, or is moot when the result is reused
            fetch.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            # The job's deadline (its objects are purged then), and an earlier job's result at this address.
            deadline, reused = await asyncio.gather(self._store.job_deadline(task.job_id),
                                                    self._store.read_manifest(key))
            if reused is not None and await self._store.touch(
                    [sibling_key(key, "manifest.json")] + [ref.key for ref in reused.objects], deadline):
                log.info("task %s: result reused from %s", task.task_id, key)
                reused.compute_s, reused.reused = 0.0, True  # nothing computed for this job
                return reused
            events.emit(task.job_id, task.tenant_id, started=Started(stage=task.stage, worker_id=self.worker_id))
            data = await fetch if fetch else None
        finally:
            if fetch is not None and not fetch.done():
                fetch.cancel()
        # Only a final stage is sent its output quality (scheduler plan.Dispatch); without one the output is an
        # intermediate that only the next stage reads, stored as the cheapest PNG to write and read.
        quality = params.pop("quality", None)
        source = None
        if data is not None:
            with step(task.model, "decode"):
                source = await asyncio.to_thread(decode, data)
            await progress(0.1, "input decoded")
        kind = parameters["photocraft.kind"]["string_value"]
        if kind == "filter" and source is not None and unchanging(task.model, config, params):
            produced, spent = unchanged(source), []  # nothing for Triton to do, nothing billed
            trace.get_current_span().set_attribute("photocraft.unchanged", True)  # the task's span: no Triton call
        else:
            with step(task.model, "model"), computing() as spent:  # spent: billed as the model's compute
                produced = await RUNNERS[kind](self._triton, task.model, config, source, params, progress)
        warnings = (list(source.warnings) if source else []) + produced.info.get("warnings", [])
        output = TaskOutput(info_json=json.dumps(produced.info), warnings=warnings)
        if produced.image is not None:  # an analysis has none: the scheduler passes its input on
            output.objects.extend(await self._store_images(key, result_id, produced, quality, deadline, task.model))
        await self._store.write_manifest(key, output, deadline)  # without compute_s: a reuse computes nothing
        await progress(0.95, "result stored")
        await events.flush()  # a failed event fails the task (retryable), as when each was awaited
        output.compute_s, output.model = sum(spent), task.model
        return output

    async def _fetch(self, task: TaskDispatched) -> bytes:
        with step(task.model, "fetch"):
            return await self._store.get(task.inputs[0])

    def _address(self, task: TaskDispatched, weights: str, params: dict) -> tuple[str, str]:
        """Where the result goes, and its content id: reusable when every input has a content id."""
        input_ids = [ref.content_id for ref in task.inputs]
        if all(input_ids):
            result_id = output_id(task.model, weights, params, task.output_format, input_ids)
            return cache_key(self._keyring, task.tenant_id, task.model, result_id, task.output_format), result_id
        return stage_key(self._keyring, task.tenant_id, task.job_id, task.stage, task.output_format), task.task_id

    async def _store_images(self, key: str, result_id: str, produced: Produced, quality: int | None,
                            deadline: float | None, model: str) -> list[ObjectRef]:
        """The image (and the mask, if any) encoded and stored, both at once; the image's ref first."""
        extension = key.rsplit(".", 1)[1]
        height, width = produced.image.shape[:2]
        objects = [(key, produced.image, extension, FORMATS[extension][1], result_id, "image")]
        if produced.mask is not None:
            objects.append((sibling_key(key, "mask.png"), produced.mask, "png", "image/png", f"{result_id}:mask",
                            "mask"))

        async def one(object_key: str, pixels, ext: str, content_type: str, content_id: str, role: str) -> ObjectRef:
            image = role == "image"  # the steps timed (metrics.STEP_SECONDS) are the image's
            with step(model, "encode") if image else nullcontext():
                data = await asyncio.to_thread(encode, pixels, ext, quality or 92, quality is None and image)
            with step(model, "store") if image else nullcontext():
                ref = await self._store.put(object_key, data, content_type, width, height, deadline)
            ref.content_id, ref.role = content_id, role
            return ref
        return list(await asyncio.gather(*(one(*entry) for entry in objects)))


async def _settle(events: OrderedEvents, task: TaskDispatched) -> None:
    """Wait for a failed task's events; one that could not be published is logged (the failure still goes)."""
    try:
        await events.flush()
    except Exception:
        log.exception("task %s: an event was not published", task.task_id)
