"""GET /v1/usage and ``photocraft-tenants usage`` without a database: the period's parsing and checks, the
report's totals, the table and the CSV, and the route's refusals in-process (on the fakes of
test_gateway_routes), which are all answered before the ledger is read; PostgreSQL out of reach (a port
where nothing listens) is 503. The ledger's answers themselves: tests/platform/test_usage_api.py."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, date, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import create_async_engine

from photocraft_common.usage.ledger import UsageRow
from photocraft_gateway.app import create_app
from photocraft_gateway.usage import MAX_DAYS, Period, period, report
from photocraft_gateway.usage_table import csv_text, month_period, table

from .test_gateway_routes import Gateway, assert_problem, settings  # noqa: F401 (settings)

TODAY = date(2026, 11, 30)
ROWS = [UsageRow("2026-11-02", jobs=3, charged_jobs=2, units=5, megapixels_in=0.1, megapixels_out=0.2,
                 compute_s=3.0),
        UsageRow("2026-11-03", jobs=2, charged_jobs=1, units=1, megapixels_in=0.2, megapixels_out=2.0,
                 compute_s=1.25)]


def test_the_period_defaults_to_this_month_so_far_and_takes_both_days():
    assert period(None, None, TODAY) == Period(date(2026, 11, 1), TODAY)
    assert period(None, "2026-02-14", TODAY) == Period(date(2026, 2, 1), date(2026, 2, 14))
    assert period("2026-10-05", None, TODAY) == Period(date(2026, 10, 5), TODAY)
    one_day = period("2026-11-30", "2026-11-30", TODAY)
    assert (one_day.start, one_day.end) == (datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    leap = period("2024-01-01", "2024-12-31", TODAY)  # 366 days: the longest allowed
    assert period("2025-01-01", "2026-01-01", TODAY).first == date(2025, 1, 1)  # 366 days too
    assert (leap.end - leap.start).days == MAX_DAYS


@pytest.mark.parametrize(("first", "last", "message"), [
    ("2026-02-30", None, "YYYY-MM-DD"), ("yesterday", None, "YYYY-MM-DD"), (None, "2026-13-01", "YYYY-MM-DD"),
    ("2026-11-02", "2026-11-01", "after"), ("2025-01-01", "2026-01-02", "367 days; at most 366"),
    ("9999-12-31", "9999-12-31", "last day"), ("2026-12-01", None, "after")])  # from after today
def test_bad_periods_are_refused_with_the_reason(first, last, message):
    with pytest.raises(ValueError, match=message):
        period(first, last, TODAY)


def test_a_month_is_its_first_to_its_last_day():
    assert month_period("2026-11") == Period(date(2026, 11, 1), date(2026, 11, 30))
    assert month_period("2024-02") == Period(date(2024, 2, 1), date(2024, 2, 29))
    assert month_period("2026-12").end == datetime(2027, 1, 1, tzinfo=UTC)
    for bad in ("2026-13", "2026-1", "2026-11-01", "nov", "0000-01", "9999-12"):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_period(bad)


def test_the_report_sums_its_rows_without_float_noise():
    usage = report("acme", Period(date(2026, 11, 1), TODAY), "day", ROWS)
    body = usage.model_dump(mode="json", by_alias=True)
    assert (body["tenant"], body["from"], body["to"], body["group_by"]) == ("acme", "2026-11-01", "2026-11-30", "day")
    assert body["rows"][0] == {"key": "2026-11-02", "jobs": 3, "charged_jobs": 2, "units": 5, "megapixels_in": 0.1,
                               "megapixels_out": 0.2, "compute_s": 3.0}
    assert body["totals"] == {"jobs": 5, "charged_jobs": 3, "units": 6, "megapixels_in": 0.3, "megapixels_out": 2.2,
                              "compute_s": 4.25}  # 0.1 + 0.2 is 0.30000000000000004 unrounded
    empty = report("acme", Period(TODAY, TODAY), "operation", []).model_dump()
    assert empty["rows"] == [] and set(empty["totals"].values()) == {0}


def test_the_table_is_aligned_with_a_totals_row_and_the_csv_has_every_row():
    usage = report("acme", month_period("2026-11"), "day", ROWS)
    title, header, *rows, total = table(usage).splitlines()
    assert title == "usage of acme, 2026-11-01 to 2026-11-30 (UTC days, both included), per day"
    assert header.split() == ["day", "jobs", "charged_jobs", "units", "megapixels_in", "megapixels_out", "compute_s"]
    assert total.split() == ["total", "5", "3", "6", "0.300", "2.200", "4.2"]
    assert [r.split()[0] for r in rows] == ["2026-11-02", "2026-11-03"]
    ends = {tuple(m.end() for m in re.finditer(r"\S+", line))[1:] for line in (header, *rows, total)}
    assert len(ends) == 1  # every number column ends where its header does: right-aligned
    parsed = list(csv.DictReader(io.StringIO(csv_text(usage))))
    assert [(r["day"], int(r["units"]), float(r["compute_s"])) for r in parsed] == [
        ("2026-11-02", 5, 3.0), ("2026-11-03", 1, 1.25)]


@pytest.fixture
def gateway(settings):  # noqa: F811
    gateway = Gateway()
    with TestClient(create_app(settings, gateway.connect), raise_server_exceptions=False) as gateway.http:
        yield gateway


def device(gateway: Gateway) -> dict[str, str]:
    """A valid device token's header (device tokens need no database)."""
    return {"X-Device-Token": gateway.platform.accounts.new_device().issued_token}


@pytest.mark.parametrize(("query", "status", "slug"), [
    ("from=2026-11-31", 422, "invalid-period"), ("from=2026-11-05&to=2026-11-04", 422, "invalid-period"),
    ("from=2020-01-01&to=2026-01-01", 422, "invalid-period"), ("from=11/01/2026", 422, "invalid-request"),
    ("group_by=tier", 422, "invalid-request"), ("to=1700000000", 422, "invalid-request"),
    ("to=\u0662\u0660\u0662\u0666-\u0661\u0661-\u0660\u0661", 422, "invalid-request")])  # Arabic-Indic digits
def test_bad_queries_are_problems(gateway, query, status, slug):
    assert_problem(gateway.http.get(f"/v1/usage?{query}", headers=device(gateway)), status, slug)


def test_without_credentials_or_with_a_forged_device_token_it_is_401(gateway):
    for headers in ({}, {"X-Device-Token": "k1.forged"}):
        response = gateway.http.get("/v1/usage", headers=headers)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        assert "x-device-token" not in response.headers  # no new device is handed out on a read


def test_postgresql_out_of_reach_is_503_with_retry_after(gateway):
    gateway.platform.engine = create_async_engine("postgresql+asyncpg://nobody:none@127.0.0.1:9/photocraft")
    try:
        response = gateway.http.get("/v1/usage", headers=device(gateway))
    finally:
        gateway.call(gateway.platform.engine.dispose)
    assert_problem(response, 503, "database-unavailable")
    assert response.headers["retry-after"] == "5"


def test_the_openapi_schema_documents_the_route(gateway):
    operation = gateway.http.get("/openapi.json").json()["paths"]["/v1/usage"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"from", "to", "group_by"}
    assert "both included" in operation["description"]
    assert {"401", "422", "503"} <= set(operation["responses"])
