"""GET /v1/usage and ``photocraft-tenants usage`` on the running platform (make up): jobs recorded in the
real ledger (PostgreSQL) for tenants of this test alone, read back per day and per operation through the
gateway and the CLI; another tenant's usage never shows; bad periods and missing credentials are problems."""

from __future__ import annotations

import csv
import io
import secrets
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from photocraft_common.accounts import Accounts
from photocraft_common.tables import usage_records
from photocraft_common.tiers import Tier
from photocraft_common.usage.ledger import Ledger, Usage
from photocraft_common.usage.prices import charge

from .helpers import GATEWAY

TENANTS_TOOL = Path(sys.executable).parent / "photocraft-tenants"
FIRST, LAST = date(2026, 10, 30), date(2026, 11, 1)  # a period across a month's end; both days included
NUMBERS = ("jobs", "charged_jobs", "units", "megapixels_in", "megapixels_out", "compute_s")


@pytest.fixture
async def tenants(engine):
    """Two pro tenants of this test alone, with an API key each (as `photocraft-tenants create` makes them):
    ``{tenant: key}``; their ledger rows are deleted afterwards."""
    accounts = Accounts(engine)
    made = {tenant: await accounts.create_key(tenant, Tier.PRO)
            for tenant in [f"usage-test-{secrets.token_hex(4)}" for _ in range(2)]}
    yield made
    async with engine.begin() as connection:
        await connection.execute(sa.delete(usage_records).where(usage_records.c.tenant.in_(list(made))))


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def job(tenant: str, operation: str, outcome: str, finished_at: datetime, stages_run: int = 1,
        mp_in: float = 0.25, compute_s: dict | None = None, tier: str = "pro") -> Usage:
    return Usage(tenant=tenant, job_id=f"{tenant}-{secrets.token_hex(6)}", operation=operation, tier=tier,
                 outcome=outcome, stages_run=stages_run, stages_reused=0, megapixels_in=mp_in,
                 megapixels_out=mp_in * 4, finished_at=finished_at, compute_s=compute_s or {"oidn": 0.5})


def expected(jobs: list[Usage], key) -> dict[str, dict]:
    """What the API must answer for ``jobs``, summed here from the jobs themselves, per ``key(job)``."""
    groups: dict[str, dict] = defaultdict(lambda: dict.fromkeys(NUMBERS, 0))
    for j in jobs:
        g, units = groups[key(j)], charge(j.tier, j.operation, j.outcome, j.stages_run)
        g["jobs"] += 1
        g["charged_jobs"] += units > 0
        g["units"] += units
        g["megapixels_in"] += j.megapixels_in
        g["megapixels_out"] += j.megapixels_out
        g["compute_s"] += sum(j.compute_s.values())
    return dict(sorted(groups.items()))


def rows_by_key(body: dict) -> dict[str, dict]:
    return {r.pop("key"): r for r in body["rows"]}


def close(got: dict[str, dict], want: dict[str, dict]) -> bool:
    return got.keys() == want.keys() and all(got[k][n] == pytest.approx(want[k][n], abs=1e-6)
                                             for k in want for n in NUMBERS)


async def get(key: str, **query) -> httpx.Response:
    async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
        return await client.get("/v1/usage", params=query, headers={"Authorization": f"Bearer {key}"})


async def test_usage_per_day_and_per_operation_is_the_tenants_own(engine, tenants):
    (mine, my_key), (theirs, their_key) = tenants.items()
    ledger = Ledger(engine)
    inside = [job(mine, "restore", "completed", at(FIRST, 0), stages_run=3, compute_s={"oidn": 1.5, "tone": 0.25}),
              job(mine, "remove-background", "completed", at(FIRST, 9), mp_in=0.5, compute_s={"u2netp": 0.75}),
              job(mine, "retouch", "no-op", at(FIRST, 10)),  # not charged
              job(mine, "retouch", "failed", at(FIRST + timedelta(days=1), 3)),  # not charged
              job(mine, "enhance", "cancelled", at(FIRST + timedelta(days=1), 4), stages_run=0),  # not charged
              job(mine, "enhance", "cancelled", at(FIRST + timedelta(days=1), 5), stages_run=1),  # charged
              job(mine, "colorize", "completed", at(LAST, 23, 59, 59))]  # the last second of `to`: included
    outside = [job(mine, "restore", "completed", at(FIRST, 0) - timedelta(seconds=1)),
               job(mine, "restore", "completed", at(LAST + timedelta(days=1), 0))]
    others = [job(theirs, "restore", "completed", at(FIRST, 12)), job(theirs, "text-to-image", "completed",
                                                                     at(LAST, 1), stages_run=2)]
    for usage in inside + outside + others:
        assert await ledger.record(usage)

    by_day = await get(my_key, **{"from": str(FIRST), "to": str(LAST)})
    by_operation = await get(my_key, **{"from": str(FIRST), "to": str(LAST), "group_by": "operation"})
    theirs_by_day = await get(their_key, **{"from": str(FIRST), "to": str(LAST)})

    assert by_day.status_code == 200, by_day.text
    day = by_day.json()
    assert (day["tenant"], day["from"], day["to"], day["group_by"]) == (mine, str(FIRST), str(LAST), "day")
    assert close(rows_by_key(day), expected(inside, lambda j: j.finished_at.date().isoformat()))
    assert close({"all": day["totals"]}, expected(inside, lambda j: "all"))
    assert day["totals"]["units"] == 4 + 1 + 2 + 2 and day["totals"]["jobs"] == len(inside)
    operation = by_operation.json()
    assert operation["group_by"] == "operation"
    assert close(rows_by_key(operation), expected(inside, lambda j: j.operation))
    assert operation["totals"] == day["totals"]
    # the same as the ledger itself answers, and nothing of the other tenant's either way
    ledger_days = await ledger.usage(mine, at(FIRST, 0), at(LAST + timedelta(days=1), 0))
    assert [r.key for r in ledger_days] == list(rows_by_key(by_day.json()))
    assert close(rows_by_key(theirs_by_day.json()), expected(others, lambda j: j.finished_at.date().isoformat()))
    assert theirs_by_day.json()["tenant"] == theirs


async def test_the_default_period_is_this_month_so_far(engine, tenants):
    tenant, key = next(iter(tenants.items()))
    now = datetime.now(UTC)
    assert await Ledger(engine).record(job(tenant, "enhance", "completed", now))
    body = (await get(key)).raise_for_status().json()
    first, last = date.fromisoformat(body["from"]), date.fromisoformat(body["to"])
    assert first == last.replace(day=1) and last >= now.date() and (last - now.date()).days <= 1
    assert body["totals"]["units"] == (2 if first <= now.date() else 0)  # 0 only across midnight of a month's end
    assert [r["key"] for r in body["rows"]] == ([now.date().isoformat()] if first <= now.date() else [])


async def test_an_anonymous_device_sees_its_own_usage(engine, settings):
    device = Accounts(None, settings.required_keyring()).new_device()  # what the gateway hands a browser
    tenant = device.tenant_id
    try:
        assert await Ledger(engine).record(job(tenant, "remove-background", "completed", at(FIRST, 8),
                                                tier="anonymous"))
        async with httpx.AsyncClient(base_url=GATEWAY, timeout=30) as client:
            response = await client.get("/v1/usage", params={"from": str(FIRST), "to": str(LAST)},
                                        headers={"X-Device-Token": device.issued_token})
        body = response.raise_for_status().json()
        assert body["tenant"] == tenant and body["totals"]["jobs"] == 1 and body["totals"]["units"] == 0
    finally:
        async with engine.begin() as connection:
            await connection.execute(sa.delete(usage_records).where(usage_records.c.tenant == tenant))


@pytest.mark.parametrize(("query", "slug"), [
    ({"from": "2026-11-05", "to": "2026-11-04"}, "invalid-period"),
    ({"from": "2025-01-01", "to": "2026-11-01"}, "invalid-period"),
    ({"from": "2026-02-30"}, "invalid-period"),
    ({"from": "1 Nov 2026"}, "invalid-request"),
    ({"group_by": "tier"}, "invalid-request")])
async def test_bad_periods_are_422_problems(api_key, query, slug):
    response = await get(api_key, **query)
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"/problems/{slug}"


async def test_no_credentials_or_an_unknown_key_is_401(anonymous):
    missing = await anonymous.get("/v1/usage")
    unknown = await get("pc_" + secrets.token_urlsafe(32))
    assert (missing.status_code, missing.json()["type"]) == (401, "/problems/unauthorized")
    assert "x-device-token" not in missing.headers
    assert (unknown.status_code, unknown.json()["type"]) == (401, "/problems/invalid-api-key")


def tenants_usage(*args: str) -> str:
    result = subprocess.run([TENANTS_TOOL, "usage", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_the_cli_answers_what_the_api_does_for_a_month(engine, tenants):
    tenant, key = next(iter(tenants.items()))
    jobs = [job(tenant, "restore", "completed", at(date(2026, 10, 1), 0)),  # the month's first second
            job(tenant, "retouch", "completed", at(date(2026, 10, 31), 23, 59, 59), mp_in=1.5),
            job(tenant, "retouch", "failed", at(date(2026, 10, 15), 12)),
            job(tenant, "retouch", "completed", at(date(2026, 11, 1), 0))]  # November's
    for usage in jobs:
        assert await Ledger(engine).record(usage)
    api = (await get(key, **{"from": "2026-10-01", "to": "2026-10-31", "group_by": "operation"})).json()

    lines = list(csv.DictReader(io.StringIO(tenants_usage(tenant, "--month", "2026-10", "--group-by",
                                                          "operation", "--csv"))))
    assert [{k: float(v) for k, v in line.items() if k != "operation"} for line in lines] == [
        {n: float(r[n]) for n in NUMBERS} for r in api["rows"]]
    assert [line["operation"] for line in lines] == ["restore", "retouch"]

    title, header, *rows, total = tenants_usage(tenant, "--month", "2026-10").splitlines()
    assert title.startswith(f"usage of {tenant}, 2026-10-01 to 2026-10-31")
    assert [r.split()[0] for r in rows] == ["2026-10-01", "2026-10-15", "2026-10-31"]
    assert total.split()[:4] == ["total", "3", "2", str(api["totals"]["units"])] and api["totals"]["units"] == 5


def test_the_cli_refuses_a_malformed_month():
    result = subprocess.run([TENANTS_TOOL, "usage", "acme", "--month", "2026-13"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "YYYY-MM" in result.stderr


def test_the_cli_refuses_a_tenant_without_an_account():
    missing = f"no-such-tenant-{uuid.uuid4().hex[:8]}"
    result = subprocess.run([TENANTS_TOOL, "usage", missing], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and f"no tenant '{missing}'" in result.stderr
