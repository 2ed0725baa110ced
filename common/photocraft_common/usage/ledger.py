"""The usage ledger in PostgreSQL: one row per finished job, written exactly once (docs/billing.md).

Tables (photocraft_common.tables, made by the migrations in photocraft_common/migrations):

- ``usage_records``: one row per finished job, unique by ``job_id`` (Kafka delivers a job's end at
  least once; a second ``record`` of it changes nothing). Megapixels are 10^6 pixels; ``compute_s``
  maps each Triton model to the seconds of compute it spent on the job; ``units`` is what the job
  was charged (usage.prices) when it was recorded; times are UTC (timestamptz).
- ``usage_stages``: one row per stage of a recorded job, run or reused: its model and compute seconds.
- ``meter_exports``: which ledger row went to Stripe as which meter event (``stripe_identifier``,
  Stripe's idempotency identifier), for the exporter (usage/exporter.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ..contracts import UsageReport, to_datetime
from ..tables import usage_records, usage_stages
from ..tiers import Tier
from .prices import DEFAULT_PRICES, Outcome, Prices, charge


@dataclass(frozen=True)
class StageRun:
    """One stage of a recorded job: ``model`` that computed it ("" when not known), whether it was ``reused``
    (an earlier identical output), ``compute_s`` seconds of inference."""

    stage: str
    model: str = ""
    reused: bool = False
    compute_s: float = 0.0


@dataclass(frozen=True)
class Usage:
    """What one finished job used. ``megapixels_*``: 10^6 pixels of the input and of the result(s);
    ``compute_s``: model name -> seconds of compute (measured by the workers); ``stages_run``: stages
    handed to a worker; ``stages_reused``: stages whose output was reused instead of run;
    ``finished_at``: when it ended (timezone-aware). Raises ValueError for a value out of range."""

    tenant: str
    job_id: str
    operation: str
    tier: Tier
    outcome: Outcome
    stages_run: int
    stages_reused: int
    megapixels_in: float
    megapixels_out: float
    finished_at: datetime
    compute_s: Mapping[str, float] = field(default_factory=dict)
    batch_id: str | None = None
    stages: tuple[StageRun, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tier", Tier(self.tier))
        object.__setattr__(self, "outcome", Outcome(self.outcome))
        if not self.tenant or not self.job_id:
            raise ValueError("a usage record needs a tenant and a job_id")
        if min(self.stages_run, self.stages_reused) < 0:
            raise ValueError(f"job {self.job_id}: stage counts must be >= 0")
        numbers = [self.megapixels_in, self.megapixels_out, *self.compute_s.values(),
                   *(s.compute_s for s in self.stages)]
        if not all(math.isfinite(n) and n >= 0 for n in numbers):
            raise ValueError(f"job {self.job_id}: megapixels and compute seconds must be finite and >= 0")
        if self.finished_at.utcoffset() is None:
            raise ValueError(f"job {self.job_id}: finished_at must be timezone-aware")


def usage_of(report: UsageReport) -> Usage:
    """The Usage a UsageReport (topic photocraft.usage.reports) says. Raises ValueError for a report out of range
    (an unknown tier or outcome, negative counts, ...)."""
    return Usage(tenant=report.tenant_id, job_id=report.job_id, operation=report.operation, tier=report.tier,
                 outcome=report.outcome, stages_run=report.stages_run, stages_reused=report.stages_reused,
                 megapixels_in=report.megapixels_in, megapixels_out=report.megapixels_out,
                 finished_at=to_datetime(report.finished_at), compute_s=dict(report.compute_s),
                 batch_id=report.batch_id or None,
                 stages=tuple(StageRun(s.stage, s.model, s.reused, s.compute_s) for s in report.stages))


@dataclass(frozen=True)
class UsageRow:
    """One group of ``Ledger.usage``: ``key`` is a UTC day (``2026-11-30``) or an operation; ``jobs``
    finished, ``charged_jobs`` of them charged > 0 units, ``units`` charged in all, megapixels (10^6
    pixels) in and out, ``compute_s``: seconds of model compute, all models together."""

    key: str
    jobs: int
    charged_jobs: int
    units: int
    megapixels_in: float
    megapixels_out: float
    compute_s: float


class Ledger:
    """The usage ledger on ``engine`` (an asyncpg AsyncEngine, photocraft_common.database.make_engine),
    charging by ``prices`` (PlatformSettings.prices). Raises what SQLAlchemy raises for database errors."""

    def __init__(self, engine: AsyncEngine, prices: Prices = DEFAULT_PRICES) -> None:
        self.engine = engine
        self.prices = prices

    async def record(self, usage: Usage) -> bool:
        """Record ``usage`` with the units ``prices.charge`` gives it, once per job (INSERT ... ON CONFLICT
        (job_id) DO NOTHING), with a ``usage_stages`` row per stage in the same transaction. Returns True when
        the row is new, False when the job was recorded already (the first record stands). Raises KeyError when
        the tier or operation has no price."""
        units = charge(usage.tier, usage.operation, usage.outcome, usage.stages_run, self.prices)
        row = {name: getattr(usage, name) for name in (
            "tenant", "job_id", "batch_id", "operation", "stages_run", "stages_reused", "megapixels_in",
            "megapixels_out", "finished_at")}
        row.update(tier=str(usage.tier), outcome=str(usage.outcome), compute_s=dict(usage.compute_s), units=units)
        statement = (insert(usage_records).values(row).on_conflict_do_nothing(index_elements=["job_id"])
                     .returning(usage_records.c.id))
        async with self.engine.begin() as connection:  # the job's row and its stages' rows, or none
            if (new := (await connection.execute(statement)).first()) is None:
                return False
            if usage.stages:
                await connection.execute(insert(usage_stages), [
                    {"usage_record_id": new.id, "stage": s.stage, "model": s.model, "reused": s.reused,
                     "compute_s": s.compute_s} for s in usage.stages])
            return True

    async def usage(self, tenant: str, start: datetime, end: datetime,
                    group_by: Literal["day", "operation"] = "day") -> list[UsageRow]:
        """``tenant``'s jobs that finished in [``start``, ``end``) (timezone-aware), summed per UTC day
        or per operation, in key order; groups without jobs are absent. Raises ValueError for naive or
        empty ranges and for another ``group_by``."""
        if start.utcoffset() is None or end.utcoffset() is None:
            raise ValueError("start and end must be timezone-aware")
        if start >= end:
            raise ValueError(f"empty range: start {start.isoformat()} is not before end {end.isoformat()}")
        t = usage_records.c
        if group_by == "day":
            key = sa.func.to_char(sa.func.timezone("UTC", t.finished_at), "YYYY-MM-DD")
        elif group_by == "operation":
            key = t.operation
        else:
            raise ValueError(f"group_by must be 'day' or 'operation', not {group_by!r}")
        each = sa.func.jsonb_each_text(t.compute_s).table_valued("key", "value")
        seconds = sa.select(sa.func.coalesce(sa.func.sum(sa.cast(each.c.value, sa.Double)), 0.0)).scalar_subquery()
        query = (sa.select(key.label("key"), sa.func.count().label("jobs"),
                           sa.func.count().filter(t.units > 0).label("charged_jobs"),
                           sa.func.coalesce(sa.func.sum(t.units), 0).label("units"),
                           sa.func.sum(t.megapixels_in).label("megapixels_in"),
                           sa.func.sum(t.megapixels_out).label("megapixels_out"),
                           sa.func.sum(seconds).label("compute_s"))
                 .where(t.tenant == tenant, t.finished_at >= start, t.finished_at < end)
                 .group_by(key).order_by(key))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        return [UsageRow(key=r.key, jobs=r.jobs, charged_jobs=r.charged_jobs, units=int(r.units),
                         megapixels_in=r.megapixels_in, megapixels_out=r.megapixels_out,
                         compute_s=float(r.compute_s)) for r in rows]
