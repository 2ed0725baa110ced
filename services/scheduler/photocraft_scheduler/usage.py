"""What an ended job used, as the UsageReport the ledger records (docs/billing.md): a pure function (no I/O).

- ``outcome``: ``completed``, ``no-op`` (completed, but no stage changed the photo: outcomes.py says why the
  edit went back), ``failed`` or ``cancelled``;
- ``stages_run``: stages handed to a worker that computed them (done, or dispatched when the job ended);
  ``stages_reused``: stages finished with an earlier identical output (by the scheduler or the worker);
  skipped stages are neither;
- megapixels (10^6 pixels) of the input and, for a completed job, of its result images (masks left out);
- ``compute_s``: per Triton model, the seconds its workers measured for the outputs the job got (an attempt
  that failed, or a stage still running when the job ended, adds none);
- ``stages``: each stage run or reused, with its model and compute seconds (the ledger's ``usage_stages``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from photocraft_common import contracts as pb
from photocraft_common.jobs import JobRecord, JobStatus
from photocraft_common.operations import MEGAPIXEL

from .stages import State


def outcome(record: JobRecord, edit_returned: str) -> str:
    """The ledger's outcome of the ended job ``record``; ``edit_returned``: outcomes.edit_returned's reason."""
    if record.status is JobStatus.COMPLETED:
        return "no-op" if edit_returned == "no-op" else "completed"
    return record.status.value


def megapixels(refs: list[pb.ObjectRef]) -> float:
    """10^6 pixels of the images among ``refs`` (masks, analyses and reports left out)."""
    return sum(r.width * r.height for r in refs if r.role not in ("mask", "analysis", "report")) / MEGAPIXEL


def usage_report(record: JobRecord, states: Mapping[str, str], outputs: Mapping[str, pb.TaskOutput],
                 edit_returned: str) -> pb.UsageReport:
    """The UsageReport of the ended job ``record``, given its stages' ``states`` and recorded ``outputs``
    (stages.StageStore) and why its edit went back (``edit_returned``, "" when kept)."""
    reused = sorted(name for name, out in outputs.items() if out.reused)
    run = sorted(name for name, state in states.items() if State.ran(state) and name not in reused)
    stages = [pb.StageUsage(stage=name, model=outputs[name].model if name in outputs else "",
                            compute_s=outputs[name].compute_s if name in outputs else 0.0) for name in run]
    stages += [pb.StageUsage(stage=name, reused=True) for name in reused]
    compute: dict[str, float] = defaultdict(float)
    for stage in stages:
        if stage.model:
            compute[stage.model] += stage.compute_s
    report = pb.UsageReport(
        job_id=record.job_id, tenant_id=record.tenant_id, batch_id=record.batch_id, operation=record.operation,
        tier=record.tier, outcome=outcome(record, edit_returned), stages_run=len(run), stages_reused=len(reused),
        megapixels_in=megapixels([record.input]) if record.input else 0.0,
        megapixels_out=megapixels(record.results) if record.status is JobStatus.COMPLETED else 0.0,
        compute_s=dict(compute), stages=stages)
    report.finished_at.FromMicroseconds(int(record.updated_at * 1_000_000))
    return report
