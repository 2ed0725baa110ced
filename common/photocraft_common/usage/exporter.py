"""Stripe metered billing: the ledger's charged rows as Stripe Billing meter events, each billed once
(docs/billing.md; the CLI is the scheduler's ``photocraft-usage-export``).

A row is exported when it charged units (> 0), its tenant has a Stripe customer id
(``tenants.stripe_customer_id``) and it has no ``meter_exports`` row yet. Rows go in id order, one
meter event each: ``identifier`` ``photocraft-job-<job id>`` (unique to the job whatever database or
installation holds it; Stripe drops a second event with an identifier it has seen, for at least 24
hours), ``timestamp`` the job's ``finished_at``, payload ``stripe_customer_id`` and ``value`` (the row's
units). The ``meter_exports`` row is written, in its own
transaction, only after Stripe accepted the event: after a crash, a row that was sent but not recorded
is sent again with the same identifier (Stripe keeps one), and a recorded row is never sent again.

Several exporters may run at once: each claims up to ``batch_size`` rows with ``SELECT ... FOR NO KEY
UPDATE SKIP LOCKED`` and holds them until it has sent them, so no two send a row concurrently. (NO KEY:
the ``meter_exports`` foreign key check takes KEY SHARE on the row, which must not wait for the claim.)

Stripe takes events of the past 35 days only: older pending rows are not sent but counted
(``Report.too_old``) for the operator (docs/billing.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..tables import meter_exports, tenants, usage_records

IDENTIFIER_PREFIX = "photocraft-job-"
# Stripe refuses meter events older than 35 days; an hour's margin for clocks and a slow send.
STRIPE_WINDOW = timedelta(days=35) - timedelta(hours=1)


@dataclass(frozen=True)
class Pending:
    """A charged ledger row not exported yet: ``id`` (usage_records.id), its ``job_id``, ``tenant``, ``units``
    (> 0, whole units), ``finished_at`` (timezone-aware), ``customer`` (the tenant's Stripe customer id)."""

    id: int
    job_id: str
    tenant: str
    units: int
    finished_at: datetime
    customer: str


@dataclass(frozen=True)
class MeterEvent:
    """One Stripe Billing meter event: ``timestamp`` in Unix seconds, ``value`` whole units (> 0)."""

    event_name: str
    identifier: str
    customer: str
    value: int
    timestamp: int

    def params(self) -> dict:
        """The parameters of ``POST /v1/billing/meter_events`` (payload values are strings, as Stripe's form)."""
        return {"event_name": self.event_name, "identifier": self.identifier, "timestamp": self.timestamp,
                "payload": {"stripe_customer_id": self.customer, "value": str(self.value)}}


@dataclass(frozen=True)
class Report:
    """What one ``export_pending`` did: ``sent`` events (each now in meter_exports) and ``too_old``: pending
    rows that finished before Stripe's window and were left unsent."""

    sent: int
    too_old: int


def identifier(job_id: str) -> str:
    """The Stripe identifier of the ledger row of job ``job_id``: stable, so a resent row is deduplicated, and
    the job's alone in any database (Stripe takes up to 100 characters). Raises ValueError for an empty or
    too long id."""
    if not job_id or len(IDENTIFIER_PREFIX + job_id) > 100:
        raise ValueError(f"a job id of 1 to {100 - len(IDENTIFIER_PREFIX)} characters, not {job_id!r}")
    return f"{IDENTIFIER_PREFIX}{job_id}"


def meter_event(row: Pending, event_name: str) -> MeterEvent:
    """The meter event of ``row``. Raises ValueError for a row that charged nothing, a naive ``finished_at``,
    an empty customer id or event name: none of them may reach Stripe."""
    if row.units <= 0:
        raise ValueError(f"ledger row {row.id} charged {row.units} units: only charged rows are billed")
    if row.finished_at.utcoffset() is None:
        raise ValueError(f"ledger row {row.id}: finished_at must be timezone-aware")
    if not row.customer or not event_name:
        raise ValueError(f"ledger row {row.id}: a meter event needs a customer id and an event name")
    return MeterEvent(event_name=event_name, identifier=identifier(row.job_id), customer=row.customer,
                      value=row.units, timestamp=int(row.finished_at.timestamp()))


def oldest_accepted(now: datetime) -> datetime:
    """The earliest ``finished_at`` Stripe still takes at ``now`` (timezone-aware); raises ValueError if naive."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now - STRIPE_WINDOW


def _pending(cutoff: datetime) -> list[sa.ColumnElement[bool]]:
    """Conditions of the rows to export, finished at or after ``cutoff``."""
    u, t = usage_records.c, tenants.c
    exported = sa.exists().where(meter_exports.c.usage_record_id == u.id)
    return [u.units > 0, t.stripe_customer_id.is_not(None), u.finished_at >= cutoff, ~exported]


def _joined() -> sa.Join:
    return usage_records.join(tenants, usage_records.c.tenant == tenants.c.tenant_id)


async def claim(connection: AsyncConnection, cutoff: datetime, limit: int) -> list[Pending]:
    """Lock and return up to ``limit`` pending rows (finished at or after ``cutoff``) in id order, skipping rows
    another exporter holds; the locks last until ``connection``'s transaction ends. Rows recorded by an exporter
    that held them while this statement began are dropped by a second look (a new snapshot, READ COMMITTED)."""
    u, t = usage_records.c, tenants.c
    query = (sa.select(u.id, u.job_id, u.tenant, u.units, u.finished_at, t.stripe_customer_id.label("customer"))
             .select_from(_joined()).where(*_pending(cutoff)).order_by(u.id).limit(limit)
             .with_for_update(of=usage_records, skip_locked=True, key_share=True))
    while rows := [Pending(**r._mapping) for r in await connection.execute(query)]:
        done = set((await connection.execute(sa.select(meter_exports.c.usage_record_id).where(
            meter_exports.c.usage_record_id.in_([r.id for r in rows])))).scalars())
        if fresh := [r for r in rows if r.id not in done]:
            return fresh
    return []  # (all of a claim recorded meanwhile: the next statement's snapshot no longer finds them)


async def count_too_old(connection: AsyncConnection, cutoff: datetime) -> int:
    """Pending rows of billed tenants that finished before ``cutoff``: Stripe would refuse them."""
    u, t = usage_records.c, tenants.c
    exported = sa.exists().where(meter_exports.c.usage_record_id == u.id)
    query = (sa.select(sa.func.count()).select_from(_joined())
             .where(u.units > 0, t.stripe_customer_id.is_not(None), u.finished_at < cutoff, ~exported))
    return (await connection.execute(query)).scalar_one()


class Exporter:
    """Exports the ledger's pending rows on ``engine`` (asyncpg, database.make_engine) through ``send``, which
    delivers one MeterEvent to Stripe and raises when Stripe did not take it (then the row stays pending and
    the export stops). ``clock``: the current time, timezone-aware. Database errors are SQLAlchemy's."""

    def __init__(self, engine: AsyncEngine, send: Callable[[MeterEvent], Awaitable[None]], event_name: str,
                 batch_size: int = 100, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        self.engine, self.send, self.event_name, self.batch_size, self.clock = (
            engine, send, event_name, batch_size, clock)

    async def export_pending(self, on_sent: Callable[[Pending, MeterEvent], None] = lambda row, event: None
                             ) -> Report:
        """Send every pending row, batch by batch, recording each right after Stripe took it; ``on_sent`` is
        called per row recorded (for progress lines). Returns what was sent and what is too old to send.
        Raises what ``send`` raises (rows recorded so far stay recorded)."""
        sent = 0
        async with self.engine.connect() as claims, self.engine.connect() as records:
            while True:
                cutoff = oldest_accepted(self.clock())
                async with claims.begin():
                    batch = await claim(claims, cutoff, self.batch_size)
                    for row in batch:
                        event = meter_event(row, self.event_name)
                        await self.send(event)
                        async with records.begin():
                            await records.execute(insert(meter_exports).values(
                                usage_record_id=row.id, stripe_identifier=event.identifier).on_conflict_do_nothing())
                        sent += 1
                        on_sent(row, event)
                if not batch:
                    return Report(sent=sent, too_old=await count_too_old(claims, cutoff))
