"""Stripe metered billing end to end: ``photocraft-usage-export`` (subprocesses) against Stripe's own mock
server, stripe-mock (built by `make install` into var/bin, started here on a free port of 127.0.0.1),
behind a proxy of this test's that records every request and can hold one answer back. The ledger is a
scratch database on the local stack's PostgreSQL (made, migrated and dropped here), so no other test's
rows are exported and no other test sees these.

stripe-mock is stateless: what was billed is what the proxy saw, and Stripe keeps one event per
identifier (docs/billing.md), so "billed once" is: every identifier sent with its row's units, and a
second send only of the row in flight when the exporter was killed, with the same identifier and value.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from photocraft_common.database import make_engine, upgrade
from photocraft_common.tables import meter_exports, tenants, usage_records
from photocraft_common.usage.exporter import identifier
from photocraft_common.usage.ledger import Ledger, Usage

from .stripe_billing import EVENT_NAME, Recorder, exporter

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def scratch(settings):
    """A new database on the local stack's PostgreSQL, migrated to head: (engine, URL). Dropped afterwards."""
    main = make_engine(settings.database)
    name = f"export_scratch_{secrets.token_hex(4)}"
    admin = main.execution_options(isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = main.url.set(database=name).render_as_string(hide_password=False)
    engine = create_async_engine(url)
    try:
        await asyncio.to_thread(upgrade, url)
        yield engine, url
    finally:
        await engine.dispose()
        async with admin.connect() as connection:
            await connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await main.dispose()


async def seed(engine, charged: int, extras: bool = True) -> dict[str, tuple[str, int, int]]:
    """Ledger rows: ``charged`` charged jobs alternating between two billed tenants, and with ``extras`` the
    rows that must not be sent (0 units, tenants without a customer id or account, too old for Stripe).
    Returns what must be sent: identifier -> (customer, units, timestamp, row id), in id order."""
    run = secrets.token_hex(4)
    billed = {f"billed-{run}-{n}": f"cus_{run}{n}" for n in "ab"}
    async with engine.begin() as connection:
        await connection.execute(sa.insert(tenants), [
            *({"tenant_id": t, "tier": "pro", "stripe_customer_id": c} for t, c in billed.items()),
            {"tenant_id": f"unbilled-{run}", "tier": "pro", "stripe_customer_id": None}])
    now = datetime.now(UTC).replace(microsecond=0)
    operations = ["restore", "remove-background", "colorize"]  # 4, 1 and 2 units for pro
    [first, second] = billed

    def job(tenant, minute, operation="restore", outcome="completed", finished_at=None):
        return Usage(tenant=tenant, job_id=f"{tenant}-{minute}-{secrets.token_hex(4)}", operation=operation,
                     tier="pro", outcome=outcome, stages_run=1, stages_reused=0, megapixels_in=1.0,
                     megapixels_out=1.0, finished_at=finished_at or now - timedelta(hours=3, minutes=-minute))
    jobs = [job((first, second)[i % 2], i, operations[i % 3]) for i in range(charged)]
    if extras:
        jobs[3:3] = [job(first, 90, outcome="failed"), job(second, 91, "retouch", "no-op"),
                     job(f"unbilled-{run}", 92), job(f"no-account-{run}", 93),
                     job(first, 94, finished_at=now - timedelta(days=40))]
    ledger = Ledger(engine)
    for usage in jobs:  # one at a time: ids follow this order
        assert await ledger.record(usage)
    u = usage_records.c
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.select(u.id, u.job_id, u.tenant, u.units, u.finished_at).where(
            u.tenant.in_(billed), u.units > 0, u.finished_at > now - timedelta(days=30)).order_by(u.id))).all()
    assert len(rows) == charged
    return {identifier(r.job_id): (billed[r.tenant], r.units, int(r.finished_at.timestamp()), r.id) for r in rows}


async def exported(engine) -> list[tuple[int, str]]:
    async with engine.connect() as connection:
        return [tuple(r) for r in await connection.execute(
            sa.select(meter_exports.c.usage_record_id, meter_exports.c.stripe_identifier).order_by(meter_exports.c.id))]


def assert_sent_as_expected(recorder: Recorder, expected: dict) -> None:
    for sent in recorder.sent:
        assert sent["path"] == "POST /v1/billing/meter_events" and sent["event_name"] == EVENT_NAME
        customer, units, timestamp, _ = expected[sent["identifier"]]  # a KeyError: sent what must not be
        assert (sent["payload[stripe_customer_id]"], sent["payload[value]"], sent["timestamp"]) == (
            customer, str(units), str(timestamp))
    assert set(recorder.identifiers()) == set(expected)  # nothing lost


def as_rows(expected: dict, identifiers=None) -> list[tuple[int, str]]:
    """(row id, identifier) of each of ``identifiers`` (default: all ``expected``), as meter_exports keeps them."""
    return [(expected[i][3], i) for i in (expected if identifiers is None else identifiers)]


async def test_an_exporter_killed_mid_run_resumes_and_bills_each_row_once(scratch, recorder):
    engine, url = scratch
    expected = await seed(engine, charged=12)
    order = list(expected)
    recorder.hold_at = 7  # the second batch of 5 is under way: 6 rows recorded, the 7th taken by Stripe
    first = await exporter(url, recorder.base)
    await asyncio.wait_for(recorder.holding.wait(), 60)
    assert await exported(engine) == as_rows(expected, order[:6])  # each recorded right after Stripe took it
    first.kill()  # SIGKILL: no clean-up of any kind
    await first.wait()
    recorder.release.set()
    assert await exported(engine) == as_rows(expected, order[:6])  # the 7th reached Stripe but is not recorded

    recorder.hold_at = None
    second = await exporter(url, recorder.base)
    _, log = await asyncio.wait_for(second.communicate(), 120)
    assert second.returncode == 1, log.decode()  # all sent, but one row is too old for Stripe: the operator's
    assert b"1 pending ledger rows finished over 35 days ago" in log
    assert b"done: 6 meter events sent" in log  # the 7th again, and 8..12

    assert_sent_as_expected(recorder, expected)
    resent = {i: n for i, n in recorder.identifiers().items() if n > 1}
    assert resent == {order[6]: 2}  # only the row in flight, same identifier: Stripe keeps one
    twice = [s for s in recorder.sent if s["identifier"] == order[6]]
    assert twice[0] == twice[1]  # same value, customer, timestamp
    assert [s["identifier"] for s in recorder.sent] == order[:7] + order[6:]  # in id order, resumed at the 7th
    assert await exported(engine) == as_rows(expected, order)

    third = await exporter(url, recorder.base)  # nothing left: nothing sent
    await asyncio.wait_for(third.communicate(), 120)
    assert len(recorder.sent) == 13 and await exported(engine) == as_rows(expected, order)


async def test_replicas_never_send_the_same_row(scratch, recorder):
    engine, url = scratch
    expected = await seed(engine, charged=20, extras=False)
    recorder.hold_at = 1  # replica A holds its claim of 3 rows while waiting for Stripe's first answer
    a = await exporter(url, recorder.base, batch_size=3)
    await asyncio.wait_for(recorder.holding.wait(), 60)
    b = await exporter(url, recorder.base, batch_size=3)
    _, b_log = await asyncio.wait_for(b.communicate(), 120)  # B skips A's locked rows and sends the rest
    assert b.returncode == 0, b_log.decode()
    assert b"done: 17 meter events sent" in b_log
    recorder.release.set()
    _, a_log = await asyncio.wait_for(a.communicate(), 120)
    assert a.returncode == 0 and b"done: 3 meter events sent" in a_log, a_log.decode()
    assert_sent_as_expected(recorder, expected)
    assert max(recorder.identifiers().values()) == 1
    assert sorted(await exported(engine)) == as_rows(expected)


async def test_every_keeps_sending_what_the_ledger_gains(scratch, recorder):
    engine, url = scratch
    expected = await seed(engine, charged=3, extras=False)
    loop = await exporter(url, recorder.base, "--every", "0.2")
    try:
        async def exported_are(rows):
            deadline = time.monotonic() + 60
            while await exported(engine) != rows:
                assert loop.returncode is None and time.monotonic() < deadline, await exported(engine)
                await asyncio.sleep(0.1)
        await exported_are(as_rows(expected))
        more = await seed(engine, charged=2, extras=False)  # recorded while it runs: the next pass sends them
        await exported_are(as_rows({**expected, **more}))
    finally:
        loop.kill()
        await loop.wait()
    assert_sent_as_expected(recorder, {**expected, **more})
    assert max(recorder.identifiers().values()) == 1
