"""``photocraft-tenants usage``: a tenant's usage in one calendar month (UTC), as a table or as CSV.

The month is the period ``GET /v1/usage`` answers for ``from`` = its first day and ``to`` = its last
(usage.py): the same rows and totals. The table is for people (aligned columns, a totals row); the CSV
(a header, then one line per day or operation, no totals) for machines.
"""

from __future__ import annotations

import calendar
import csv
import io
import re
from datetime import date

from photocraft_common.accounts import DEVICE_PREFIX, Accounts
from photocraft_common.database import make_engine
from photocraft_common.settings import PlatformSettings
from photocraft_common.usage.ledger import Ledger

from .usage import GroupBy, Period, UsageSummary, UsageTotals, report

MONTH = re.compile(r"(\d{4})-(\d{2})")
COLUMNS = ("jobs", "charged_jobs", "units", "megapixels_in", "megapixels_out", "compute_s")
DECIMALS = {"megapixels_in": 3, "megapixels_out": 3, "compute_s": 1}  # in the table; CSV keeps all


def month_period(month: str) -> Period:
    """The UTC days of ``month`` (``YYYY-MM``), first to last. Raises ValueError for another form or a
    month out of range."""
    found = MONTH.fullmatch(month)
    if not found or not 1 <= int(found[2]) <= 12 or not 1 <= int(found[1]) < 9999:
        raise ValueError(f"a month is YYYY-MM (years 0001 to 9998), e.g. 2026-11, not {month!r}")
    year, number = int(found[1]), int(found[2])
    return Period(date(year, number, 1), date(year, number, calendar.monthrange(year, number)[1]))


def _cells(name: str, values: UsageTotals) -> list[str]:
    return [name] + [f"{getattr(values, c):.{DECIMALS[c]}f}" if c in DECIMALS else str(getattr(values, c))
                     for c in COLUMNS]


def table(usage: UsageSummary) -> str:
    """``usage`` as aligned columns for people: a title line, a header, a row per group, a totals row."""
    lines = [[usage.group_by, *COLUMNS], *(_cells(r.key, r) for r in usage.rows), _cells("total", usage.totals)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    title = (f"usage of {usage.tenant}, {usage.first} to {usage.last} (UTC days, both included), "
             f"per {usage.group_by}")
    return "\n".join([title, *(" ".join([line[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in
                                                                      zip(line[1:], widths[1:], strict=True)])
                               for line in lines)])


def csv_text(usage: UsageSummary) -> str:
    """``usage`` as CSV: a header (``day`` or ``operation``, then COLUMNS) and a line per group, no totals."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([usage.group_by, *COLUMNS])
    writer.writerows([r.key, *(getattr(r, c) for c in COLUMNS)] for r in usage.rows)
    return out.getvalue()


async def usage_text(tenant: str, month: str, group_by: GroupBy, as_csv: bool,
                     settings: PlatformSettings) -> str:
    """``tenant``'s usage in ``month`` from the ledger on ``settings.database``, as ``table`` or ``csv_text``.
    Raises ValueError for a malformed month or a tenant without an account (an anonymous device's, ``device-...``,
    is read as it is), DatabaseMissing without a database, SQLAlchemy's errors."""
    span = month_period(month)
    engine = make_engine(settings.database)
    try:
        if not tenant.startswith(DEVICE_PREFIX) and await Accounts(engine).tenant(tenant) is None:
            raise ValueError(f"no tenant {tenant!r} (photocraft-tenants create makes one)")
        rows = await Ledger(engine, settings.prices).usage(tenant, span.start, span.end, group_by)
    finally:
        await engine.dispose()
    usage = report(tenant, span, group_by, rows)
    return csv_text(usage) if as_csv else table(usage)
