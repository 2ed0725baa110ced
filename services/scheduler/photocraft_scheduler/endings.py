"""The end of a job: its terminal status, its edit of the daily quota, its terminal event, its batch's count.

``complete`` and ``fail`` set the job's terminal status (a guarded transition: the first end wins) and
``announce`` it. ``announce`` may run any number of times, on any replica, for one ended job (a
redelivered message, a cancelled job's next message): the edit goes back at most once (the record's
``edit_returned`` flag, set in the same Redis script, photocraft_common.quotas), the terminal event has
a fixed id and the batch counts each job once. The edit goes back before the event goes out, so a
client that reads its quota after the event sees it back. Whether it goes back: outcomes.py.

After the terminal event, each announcement publishes the job's UsageReport (usage.py) to
``photocraft.usage.reports``, off the path the client waits on; the ledger records a job once however
often it is reported (ledger.py), and the first report stands.

A completed job whose recipe has an analysis (restore) also gets its JobReport (report.py) as a result, role
``report``: written to S3 next to its stage outputs before the job is marked completed, due for purge at the
job's deadline like them. A repeated completion writes the same report again. A report that cannot be built
(an analysis it cannot read) leaves the job without one and says so in a warning; one that cannot be stored
fails the handling, which is retried.
"""

from __future__ import annotations

import logging

from photocraft_common import contracts as pb
from photocraft_common.batches import BatchStore
from photocraft_common.events import EventPublisher
from photocraft_common.jobs import JobRecord, JobStatus, JobStore, job_key
from photocraft_common.kafka import publish
from photocraft_common.keyring import Keyring
from photocraft_common.quotas import Quotas
from photocraft_common.report import CONTENT_TYPE, ROLE
from photocraft_common.storage import ObjectStore, stage_key
from photocraft_common.topics import USAGE_REPORTS

from .metrics import ended
from .outcomes import edit_returned
from .plan import Fail, Plan, announcement
from .report import analyzers, job_report
from .stages import StageStore
from .usage import usage_report

log = logging.getLogger("photocraft.scheduler")


class Endings:
    def __init__(self, jobs: JobStore, stages: StageStore, batches: BatchStore, events: EventPublisher,
                 quotas: Quotas, usage_reports: bool = True, store: ObjectStore | None = None,
                 keyring: Keyring | None = None) -> None:
        self._jobs, self._stages, self._batches, self._events, self._quotas = jobs, stages, batches, events, quotas
        self._broker, self._usage_reports = events.broker, usage_reports
        self._store, self._keyring = store, keyring  # without them no report is written

    async def complete(self, record: JobRecord, plan: Plan) -> None:
        outputs = await self._stages.outputs(record.job_id)
        done = plan.completion(outputs)
        report, warnings = await self._report(record, plan, outputs, done.warnings)
        if await self._jobs.set_status(record.job_id, JobStatus.COMPLETED, results=done.results + report,
                                       warnings=warnings):
            ended(record, "completed")
        await self.announce(await self._jobs.get(record.job_id))

    async def fail(self, record: JobRecord, fail: Fail) -> None:
        log.info("job %s failed at %r: %s %s", record.job_id, fail.stage, fail.code, fail.message)
        if await self._jobs.set_status(record.job_id, JobStatus.FAILED, error_code=fail.code,
                                       error_message=fail.message, error_stage=fail.stage):
            ended(record, "failed")
        await self.announce(await self._jobs.get(record.job_id))

    async def announce(self, record: JobRecord | None) -> None:
        """For an ended job (``record``; None: expired, nothing to do): give its edit back if outcomes.py
        says so, (re-)publish its terminal event, report its usage and count it in its batch."""
        if record is None:
            return
        states, outputs, reason = {}, {}, ""
        if self._usage_reports or (record.charge and not record.edit_returned):  # else neither needs them
            states, outputs = await self._stages.states(record.job_id), await self._stages.outputs(record.job_id)
            reason = edit_returned(record, states, outputs)
        await self._return_edit(record, reason)
        if ending := announcement(record):
            await self._events.emit(record.job_id, record.tenant_id, once="end", **ending)
        if self._usage_reports:
            await publish(self._broker, USAGE_REPORTS, usage_report(record, states, outputs, reason), None,
                          record.traceparent)
        if record.batch_id:
            batch = await self._batches.job_ended(record.batch_id, record.job_id,
                                                  record.status is JobStatus.COMPLETED)
            if batch is not None:
                await self._events.emit(batch.batch_id, batch.tenant_id, once=f"progress:{batch.done + batch.failed}",
                                        batch_progress=pb.BatchProgress(done=batch.done, failed=batch.failed,
                                                                        total=batch.total))

    async def _report(self, record: JobRecord, plan: Plan, outputs: dict,
                      warnings: list[str]) -> tuple[list[pb.ObjectRef], list[str]]:
        """The job's report stored in S3, as its result (a list of one; [] for a recipe without an analysis),
        and the job's ``warnings`` (with one more when the report could not be built)."""
        if self._store is None or self._keyring is None or not analyzers(plan):
            return [], warnings
        try:
            report = job_report(record, plan, await self._stages.states(record.job_id), outputs, warnings)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # an analysis it cannot read
            log.exception("job %s: its report could not be built", record.job_id)
            return [], [*warnings, f"report: not made, the analysis could not be read ({exc!r})"]
        key = stage_key(self._keyring, record.tenant_id, record.job_id, ROLE, "json")
        ref = await self._store.put(key, report.to_json(), CONTENT_TYPE, expires_at=record.expires_at or None)
        ref.role = ROLE
        return [ref], warnings

    async def _return_edit(self, record: JobRecord, reason: str) -> None:
        if not record.charge or record.edit_returned:
            return
        if reason and await self._quotas.return_edit(job_key(record.job_id), record.charge, reason):
            log.info("job %s: its edit went back to the daily quota (%s)", record.job_id, reason)
