"""The ledger consumer: each UsageReport of ``photocraft.usage.reports`` recorded in the usage ledger
(PostgreSQL; photocraft_common.usage.ledger, docs/billing.md).

Its consumer group is its own (``photocraft-ledger``), so a slow or absent database holds up only the
ledger, never a job: reports wait in Kafka (for the job lifetime, the topic's retention), each retried for
``ledger_retry_s`` before it goes to the dead-letter topic. A job is recorded once however often it is
reported or delivered (``Ledger.record``: a unique job id, the first report stands).
"""

from __future__ import annotations

import logging

from photocraft_common.contracts import UsageReport
from photocraft_common.kafka import Unprocessable
from photocraft_common.usage.ledger import Ledger, usage_of

from .metrics import recorded

log = logging.getLogger("photocraft.scheduler.ledger")


class LedgerWriter:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    async def on_report(self, report: UsageReport) -> bool:
        """Record ``report``; True when it is the job's first. Raises Unprocessable for a report that
        no retry can record (out of range, a tier or operation without a price), and what SQLAlchemy
        raises when the database fails (the message is then retried)."""
        try:
            usage = usage_of(report)
            new = await self.ledger.record(usage)
        except (ValueError, KeyError) as exc:
            raise Unprocessable(f"usage report of job {report.job_id!r}: {exc}") from exc
        if new:
            recorded(usage.outcome)
            log.info("job %s recorded in the usage ledger (%s)", report.job_id, usage.outcome)
        return new
