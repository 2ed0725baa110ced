"""The usage ledger on the local stack's real PostgreSQL (make up): exactly once per job under redelivery,
sums per day and per operation, and the migrations: applied twice harmlessly, and down and up again on a
scratch database that the test makes and drops."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from photocraft_common.tables import usage_records, usage_stages
from photocraft_common.usage.ledger import Ledger, StageRun, Usage, UsageRow

ROOT = Path(__file__).resolve().parents[2]
ALEMBIC = [str(Path(sys.executable).parent / "alembic"), "-c", str(ROOT / "alembic.ini")]
DAY = datetime(2026, 11, 2, tzinfo=UTC)
ALL_TABLES = {"alembic_version", "usage_records", "usage_stages", "meter_exports", "tenants", "api_keys", "partners"}


@pytest.fixture
async def tenant(engine):
    """A tenant of this test run alone; its rows are deleted afterwards."""
    name = f"ledger-test-{secrets.token_hex(4)}"
    yield name
    async with engine.begin() as connection:
        await connection.execute(sa.delete(usage_records).where(usage_records.c.tenant == name))


def usage(tenant: str, operation: str = "restore", outcome: str = "completed", **changes) -> Usage:
    values = dict(tenant=tenant, job_id=f"{tenant}-{secrets.token_hex(6)}", operation=operation, tier="pro",
                  outcome=outcome, stages_run=2, stages_reused=0, megapixels_in=0.25, megapixels_out=1.0,
                  finished_at=DAY + timedelta(hours=10), compute_s={"oidn": 0.5, "tone": 0.25},
                  stages=(StageRun("denoise", "oidn", False, 0.5), StageRun("tone", "tone", False, 0.25),
                          StageRun("upscale", reused=True)))
    return Usage(**{**values, **changes})


async def stages_of(engine, job_id: str) -> list[tuple]:
    s = usage_stages.c
    async with engine.connect() as connection:
        return [tuple(r) for r in await connection.execute(
            sa.select(s.stage, s.model, s.reused, s.compute_s).join(usage_records)
            .where(usage_records.c.job_id == job_id).order_by(s.stage))]


async def rows_of(engine, tenant: str) -> list:
    async with engine.connect() as connection:
        return (await connection.execute(sa.select(usage_records).where(usage_records.c.tenant == tenant))).all()


async def test_a_redelivered_job_is_recorded_once(engine, tenant):
    ledger = Ledger(engine)
    job = usage(tenant, batch_id="b1")
    assert await ledger.record(job) is True
    again = await asyncio.gather(*[ledger.record(job) for _ in range(5)])  # Kafka redelivers, even at once
    assert again == [False] * 5
    changed = usage(tenant, job_id=job.job_id, outcome="failed", stages=(StageRun("faces", "gfpgan"),))  # later
    assert await ledger.record(changed) is False
    [row] = await rows_of(engine, tenant)
    assert (row.job_id, row.batch_id, row.outcome, row.units, row.tier) == (job.job_id, "b1", "completed", 4, "pro")
    assert row.compute_s == {"oidn": 0.5, "tone": 0.25} and row.finished_at == job.finished_at
    assert await stages_of(engine, job.job_id) == [("denoise", "oidn", False, 0.5), ("tone", "tone", False, 0.25),
                                                   ("upscale", "", True, 0.0)]  # the first report's, once


async def test_concurrent_first_deliveries_make_one_row(engine, tenant):
    job = usage(tenant)
    ledgers = [Ledger(engine) for _ in range(8)]  # as if several scheduler replicas got the same result
    assert sorted(await asyncio.gather(*[ledger.record(job) for ledger in ledgers])) == [False] * 7 + [True]
    assert len(await rows_of(engine, tenant)) == 1
    assert len(await stages_of(engine, job.job_id)) == 3


async def test_usage_by_day_and_by_operation(engine, tenant):
    ledger = Ledger(engine)
    jobs = [usage(tenant),  # restore, 4 units
            usage(tenant, "remove-background", stages_run=1, compute_s={"u2netp": 1.5}),  # 1 unit
            usage(tenant, "restore", "no-op"),  # 0 units
            usage(tenant, "retouch", "failed", finished_at=DAY + timedelta(days=1, hours=1)),  # 0, next day
            usage(tenant, "retouch", "cancelled", stages_run=1, finished_at=DAY + timedelta(days=1, hours=2)),  # 1
            usage(tenant, "retouch", finished_at=DAY + timedelta(days=2)),  # outside the range (end excluded)
            usage(f"{tenant}-other", finished_at=DAY + timedelta(hours=1))]  # another tenant's
    try:
        assert all([await ledger.record(job) for job in jobs])
        by_day = await ledger.usage(tenant, DAY, DAY + timedelta(days=2))
        assert by_day == [UsageRow("2026-11-02", jobs=3, charged_jobs=2, units=5, megapixels_in=0.75,
                                   megapixels_out=3.0, compute_s=3.0),
                          UsageRow("2026-11-03", jobs=2, charged_jobs=1, units=1, megapixels_in=0.5,
                                   megapixels_out=2.0, compute_s=1.5)]
        by_operation = await ledger.usage(tenant, DAY, DAY + timedelta(days=2), group_by="operation")
        assert [(r.key, r.jobs, r.charged_jobs, r.units) for r in by_operation] == [
            ("remove-background", 1, 1, 1), ("restore", 2, 1, 4), ("retouch", 2, 1, 1)]
        assert await ledger.usage(tenant, DAY - timedelta(days=9), DAY) == []
        with pytest.raises(ValueError, match="empty range"):
            await ledger.usage(tenant, DAY, DAY)
        with pytest.raises(ValueError, match="group_by"):
            await ledger.usage(tenant, DAY, DAY + timedelta(days=1), group_by="tier")
    finally:
        async with engine.begin() as connection:
            await connection.execute(sa.delete(usage_records).where(usage_records.c.tenant == f"{tenant}-other"))


BOOTSTRAP = Path(sys.executable).parent / "photocraft-bootstrap"


def alembic(*args: str) -> str:
    result = subprocess.run([*ALEMBIC, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_the_bootstrap_applies_the_migrations_twice_harmlessly(engine, tenant):
    assert await Ledger(engine).record(usage(tenant))
    head = alembic("heads").split()[0]
    for _ in range(2):  # what make up and the chart's hook Job run (photocraft-bootstrap), and again
        subprocess.run([BOOTSTRAP], check=True, capture_output=True, timeout=120)
    assert alembic("current").split()[-2:] == [head, "(head)"]
    assert len(await rows_of(engine, tenant)) == 1  # nothing recorded was touched


async def test_migrations_down_and_up_on_a_scratch_database(engine):
    name = f"ledger_scratch_{secrets.token_hex(4)}"
    url = engine.url.set(database=name).render_as_string(hide_password=False)
    admin = engine.execution_options(isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    scratch = create_async_engine(url)
    try:
        alembic("-x", f"url={url}", "upgrade", "head")
        assert await table_names(scratch) == ALL_TABLES
        alembic("-x", f"url={url}", "check")  # the migrations make what usage.ledger's metadata describes
        alembic("-x", f"url={url}", "downgrade", "base")
        assert await table_names(scratch) == {"alembic_version"}
        alembic("-x", f"url={url}", "upgrade", "head")
        assert await table_names(scratch) == ALL_TABLES
        assert await Ledger(scratch).record(usage("scratch"))
    finally:
        await scratch.dispose()
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    async with engine.connect() as connection:
        left = await connection.execute(sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name})
        assert left.scalar() == 0


async def table_names(engine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
