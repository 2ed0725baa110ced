"""Job orchestration: the handlers that carry each job through its plan (plan.py).

After JobSubmitted and after every TaskResult the scheduler *advances* the job, carrying out the
plan's decision for each ready stage. A dispatched stage is reused when an identical result of the
tenant exists (photocraft_common.reuse; checked here when the model's weights digest is known, else
by the worker), or else queued in the fair-share queue (fairshare.py), which releases it to its
model's topic when the model has a free credit and the tier's turn has come. A stage's state
(stages.py) is recorded before it is queued and before it is published. A cancelled job's waiting
stages are dropped when their turn comes, and a running stage's result is discarded. Every step is
idempotent, so a message delivered twice changes nothing. How a job ends: endings.py.
"""

from __future__ import annotations

import asyncio
import logging

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from photocraft_common import contracts as pb
from photocraft_common import logs
from photocraft_common.batches import BatchStore
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import TERMINAL, JobRecord, JobStatus, JobStore
from photocraft_common.kafka import publish
from photocraft_common.models import ModelDirectory
from photocraft_common.operations import MODELS, UnknownOperation
from photocraft_common.quotas import Quotas
from photocraft_common.storage import ObjectStore, sibling_key
from photocraft_common.topics import model_topic

from . import metrics
from .endings import Endings
from .fairshare import FairShare, Picked
from .plan import Dispatch, Fail, Plan, Skip, image_of, reused, work_cost
from .retries import RetryPolicy
from .settings import SchedulerSettings
from .stages import StageStore, State

log = logging.getLogger("photocraft.scheduler")


class Scheduler:
    def __init__(self, broker: KafkaBroker, redis: Redis, store: ObjectStore, settings: SchedulerSettings) -> None:
        self._broker, self._store, self._settings = broker, store, settings
        self._keyring = settings.required_keyring()  # reuse keys sit under the tenant's opaque prefix
        self.jobs = JobStore(redis, settings.job_ttl_s)
        self.stages = StageStore(redis, settings.job_ttl_s)
        self.batches = BatchStore(redis, settings.job_ttl_s)
        self.events = EventPublisher(broker)
        self.models = ModelDirectory(redis)
        self.queue = FairShare(redis, settings.tiers)
        self.retries = RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s)
        self.endings = Endings(self.jobs, self.stages, self.batches, self.events, Quotas(redis), settings.usage_reports,
                               store, self._keyring)  # the store and keyring write a job's report

    # ---- messages ----------------------------------------------------------------------------
    async def on_submitted(self, job: pb.JobSubmitted) -> None:
        record = await self._running(job.job_id, "job %s has no record (expired or never created); dropped")
        if record is None:
            return
        try:
            plan = Plan.of(record)
        except UnknownOperation as exc:
            return await self.endings.fail(record, Fail("unknown-operation", str(exc)))
        position = await self.queue.waiting(plan.stages[0].models[0], record.tier)
        await self.events.emit(job.job_id, job.tenant_id, once="queued",
                               queued=pb.Queued(lane=record.lane, position=position))
        await self._advance(record, plan)

    async def on_cancelled(self, job_id: str) -> None:
        record = await self.jobs.get(job_id)
        if record is not None and record.status is JobStatus.CANCELLED:
            await self.endings.announce(record)

    async def not_processed(self, job_id: str, error: BaseException) -> None:
        """End the job ``job_id`` of a JobSubmitted that went to the dead-letter topic (``error``: why):
        failed, code ``not-processed``, unless it has ended. An unknown job id is logged."""
        record = await self.jobs.get(job_id) if job_id else None
        if record is None:
            return log.warning("dead-lettered submission of unknown job %r (%r)", job_id, error)
        await self.endings.fail(record, Fail("not-processed", "the scheduler could not process the job's "
                                             "submission; it was set aside for the operators"))

    async def on_result(self, result: pb.TaskResult) -> None:
        await self.queue.finish(result.task_id)
        try:
            if (record := await self._running(result.job_id, "result for unknown job %s dropped")) is None:
                return
            state = await self.stages.state(record.job_id, result.stage)
            if not State.is_current(state, result.attempt):
                log.info("stale result %s (attempt %d; stage is %s) ignored", result.task_id, result.attempt, state)
                if state in (State.DONE, State.SKIPPED):  # a replica died after recording it: go on from there
                    await self._advance(record, Plan.of(record))
                return
            if result.WhichOneof("outcome") == "error":
                return await self._failed_attempt(record, result.stage, result.attempt, result.error.code,
                                                  result.error.message, result.error.retryable)
            outputs = await self.stages.outputs(record.job_id)
            plan = Plan.of(record)
            await self._finish_stage(record, result.stage,
                                     plan.output_of(result.stage, result.output, outputs, result.model))
            await self._advance(record, plan)
        finally:
            await self.pump(result.model)

    async def _running(self, job_id: str, unknown: str) -> JobRecord | None:
        """The job's record while it has not ended. None for an unknown job (logging ``unknown``
        with its id) or an ended one, whose end is then announced again."""
        record = logs.bound(await self.jobs.get(job_id))
        if record is None:
            log.warning(unknown, job_id)
        elif record.status in TERMINAL:
            await self.endings.announce(record)
        else:
            return record
        return None

    # ---- the fair-share queue ----------------------------------------------------------------
    async def pump(self, model: str) -> None:
        """Release ``model``'s stages while it has free credits, in fair-share order."""
        while (picked := await self.queue.pick(model)) is not None:
            await self._release(picked)

    async def _release(self, picked: Picked) -> None:
        queue_id, task = picked.task_id, logs.bound(pb.parse(pb.TaskDispatched, picked.payload))
        record = await self.jobs.get(task.job_id)
        if record is None or record.status in TERMINAL:  # cancelled while it waited
            await self.queue.finish(queue_id)
            return await self.endings.announce(record)  # in case its JobCancelled never came
        await self.stages.set_state(record.job_id, task.stage, State.dispatched(task.attempt))
        await publish(self._broker, model_topic(task.model), task, picked.partition, record.traceparent)  # job's trace
        await self.queue.confirm(queue_id)
        metrics.released(record, task)

    async def tick(self, check_overdue: bool) -> None:
        """Periodic work: due retries, claims of dead replicas, overdue tasks, models with free slots."""
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
    async def _advance(self, record: JobRecord, plan: Plan) -> None:
        await self._requeue_lost(record, plan)
        while True:
            states = await self.stages.states(record.job_id)
            if plan.is_complete(states):
                return await self.endings.complete(record, plan)
            ready = plan.ready(states)
            if not ready:
                break
            outputs, available = await asyncio.gather(self.stages.outputs(record.job_id), self.models.available())
            for stage in ready:
                match plan.decide(stage, states, outputs, available):
                    case Skip() as skip:
                        await self._finish_stage(record, skip.stage, skip.output, State.SKIPPED)
                    case Fail() as fail:
                        return await self.endings.fail(record, fail)
                    case Dispatch() as dispatch:
                        await self._queue_stage(record, dispatch)
        await self.jobs.set_status(record.job_id, JobStatus.RUNNING)

    async def _requeue_lost(self, record: JobRecord, plan: Plan) -> None:
        """Queue again the stages recorded as queued that never reached the queue (a replica died
        between the two writes); the queue leaves alone a task it holds already."""
        states = await self.stages.states(record.job_id)
        waiting = {name: n for name, state in states.items() if (n := State.queued_attempt(state))}
        if not waiting or not self._settings.fair_share:
            return
        outputs, available = await asyncio.gather(self.stages.outputs(record.job_id), self.models.available())
        for name, attempt in waiting.items():
            dispatch = plan.redispatch(name, states, outputs, available)
            task = dispatch.task(record, attempt, pb.now())
            if await self.queue.enqueue(task.task_id, task.SerializeToString(), dispatch.model, record.tier,
                                        record.tenant_id, work_cost(record)):
                log.warning("job %s: %s was recorded as queued but not in the queue; queued again", record.job_id,
                            name)
                await self.pump(dispatch.model)

    async def _queue_stage(self, record: JobRecord, dispatch: Dispatch, attempt: int = 1, delay_s: float = 0) -> None:
        if attempt == 1 and await self._reused(record, dispatch):
            return
        task = dispatch.task(record, attempt, pb.now())
        if not self._settings.fair_share:  # FIFO: Kafka's order, no credits
            await self.stages.set_state(record.job_id, dispatch.stage, State.dispatched(attempt))
            if delay_s:
                await asyncio.sleep(delay_s)
            return await publish(self._broker, model_topic(dispatch.model), task)
        # Recorded before queueing, so the stage is never queued twice for one attempt.
        await self.stages.set_state(record.job_id, dispatch.stage, State.queued(attempt))
        await self.queue.enqueue(task.task_id, task.SerializeToString(), dispatch.model, record.tier,
                                 record.tenant_id, work_cost(record), delay_s)
        if not delay_s:
            await self.pump(dispatch.model)

    async def _failed_attempt(self, record: JobRecord, stage: str, attempt: int, code: str, message: str,
                              retryable: bool) -> None:
        retry = self.retries.after_failure(stage, attempt, code, message, retryable)
        if isinstance(retry, Fail):
            return await self.endings.fail(record, retry)
        log.info("job %s: %s failed (%s); attempt %d in %.1f s", record.job_id, stage, retry.reason,
                 retry.attempt, retry.delay_s)
        await self.events.emit(record.job_id, record.tenant_id, once=f"{stage}:retry:{retry.attempt}",
                               retrying=pb.Retrying(stage=stage, attempt=retry.attempt, delay_s=retry.delay_s,
                                                    max_attempts=self.retries.max_attempts, reason=retry.reason))
        outputs = await self.stages.outputs(record.job_id)
        available = await self.models.available()
        states = await self.stages.states(record.job_id)
        dispatch = Plan.of(record).redispatch(stage, states, outputs, available)
        await self._queue_stage(record, dispatch, retry.attempt, retry.delay_s)

    async def _reused(self, record: JobRecord, dispatch: Dispatch) -> bool:
        """Finish the stage with an earlier job's identical result, if one is known to exist (that
        needs the model's weights digest, which a worker records when it loads the model)."""
        weights = await self.models.weights(dispatch.model)
        key = dispatch.reuse_key(self._keyring, record.tenant_id, weights) if weights else None
        cached = await self._store.read_manifest(key) if key else None
        if cached is None or not await self._store.touch(
                [sibling_key(key, "manifest.json")] + [ref.key for ref in cached.objects if "/cache/" in ref.key],
                record.expires_at or None):  # kept until this job's deadline
            return False
        log.info("job %s: %s reused from %s", record.job_id, dispatch.stage, key)
        output = reused(cached, dispatch.inputs, dispatch.warning, dispatch.model)
        await self._finish_stage(record, dispatch.stage, output)
        return True

    async def _finish_stage(self, record: JobRecord, stage: str, output: pb.TaskOutput,
                            state: str = State.DONE) -> None:
        await self.stages.record_output(record.job_id, stage, output)
        await self.stages.set_state(record.job_id, stage, state)
        if state == State.DONE:
            await self.events.emit(record.job_id, record.tenant_id, once=f"{stage}:done",
                                   stage_completed=pb.StageCompleted(stage=stage, output=image_of(output)))
