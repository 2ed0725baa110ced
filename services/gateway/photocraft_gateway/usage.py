"""``GET /v1/usage``: what the caller's own tenant used, from the usage ledger (docs/billing.md).

The period is a run of whole UTC calendar days, ``from`` and ``to`` both included (``YYYY-MM-DD``); by
default the current calendar month up to today. ``photocraft-tenants usage --month`` (usage_table.py)
takes the same periods. Sums come from photocraft_common.usage.ledger (``Ledger.usage``), per day or per
operation. A tenant only ever sees its own usage: an API key's tenant, or an anonymous device's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal

import sqlalchemy.exc
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from photocraft_common.usage.ledger import UsageRow

from .deps import IdentityDep, PlatformDep
from .problems import Problem, responses

router = APIRouter()
MAX_DAYS = 366  # the longest period one request may ask for
GroupBy = Literal["day", "operation"]
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
MEGAPIXEL_DIGITS, SECOND_DIGITS = 6, 3  # decimals kept in answers


@dataclass(frozen=True)
class Period:
    """UTC calendar days ``first`` to ``last``, both included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        """The first day's 00:00 UTC."""
        return datetime.combine(self.first, time(), UTC)

    @property
    def end(self) -> datetime:
        """The day after the last's 00:00 UTC: the end of the period, excluded (Ledger.usage's ``end``)."""
        return datetime.combine(self.last, time(), UTC) + timedelta(days=1)


def period(first: str | None, last: str | None, today: date) -> Period:
    """The period from ``first`` to ``last`` (``YYYY-MM-DD``, both included; UTC days). ``first`` defaults to
    the first day of ``today``'s month (of ``last``'s month when only ``last`` is given), ``last`` to ``today``.
    Raises ValueError naming the problem: not a date, ``first`` after ``last``, over MAX_DAYS days, or a
    period ending after 9999-12-30."""
    try:
        end = date.fromisoformat(last) if last is not None else today
        start = date.fromisoformat(first) if first is not None else end.replace(day=1)
    except ValueError as exc:
        raise ValueError(f"dates are YYYY-MM-DD: {exc}") from None
    if start > end:
        raise ValueError(f"from {start} is after to {end}")
    if (end - start).days + 1 > MAX_DAYS:
        raise ValueError(f"from {start} to {end} is {(end - start).days + 1} days; at most {MAX_DAYS} at a time")
    if end == date.max:
        raise ValueError(f"to {end} is past the last day that can be asked for")
    return Period(start, end)


class UsageTotals(BaseModel):
    """Sums over finished jobs: ``jobs``, ``charged_jobs`` (charged more than 0 units), ``units`` charged,
    megapixels (10^6 pixels) of the inputs and of the results, ``compute_s``: seconds of model compute."""

    jobs: int = Field(ge=0)
    charged_jobs: int = Field(ge=0)
    units: int = Field(ge=0)
    megapixels_in: float = Field(ge=0)
    megapixels_out: float = Field(ge=0)
    compute_s: float = Field(ge=0)


class UsageGroup(UsageTotals):
    """One day's (``key``: ``2026-11-30``, UTC) or one operation's (``key``: ``restore``) sums."""

    key: str


class UsageSummary(BaseModel):
    """A tenant's usage from ``from`` to ``to`` (UTC days, both included), per ``group_by``: ``rows`` in key
    order, only groups with jobs; ``totals`` over all of them."""

    model_config = ConfigDict(populate_by_name=True)

    tenant: str
    first: date = Field(alias="from")
    last: date = Field(alias="to")
    group_by: GroupBy
    rows: list[UsageGroup]
    totals: UsageTotals


def totals(rows: Sequence[UsageRow | UsageTotals]) -> UsageTotals:
    """The sums of ``rows``, megapixels rounded to 6 decimals and seconds to 3."""
    return UsageTotals(jobs=sum(r.jobs for r in rows), charged_jobs=sum(r.charged_jobs for r in rows),
                       units=sum(r.units for r in rows),
                       megapixels_in=round(sum(r.megapixels_in for r in rows), MEGAPIXEL_DIGITS),
                       megapixels_out=round(sum(r.megapixels_out for r in rows), MEGAPIXEL_DIGITS),
                       compute_s=round(sum(r.compute_s for r in rows), SECOND_DIGITS))


def report(tenant: str, span: Period, group_by: GroupBy, rows: Sequence[UsageRow]) -> UsageSummary:
    """The answer for ``tenant`` from the ledger's ``rows`` (Ledger.usage over ``span``)."""
    groups = [UsageGroup(key=r.key, **totals([r]).model_dump()) for r in rows]
    return UsageSummary(tenant=tenant, first=span.first, last=span.last, group_by=group_by, rows=groups,
                       totals=totals(rows))


@contextmanager
def database() -> Iterator[None]:
    """PostgreSQL out of reach becomes Problem 503 database-unavailable, with Retry-After."""
    try:
        yield
    except (OSError, TimeoutError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError):
        raise Problem(503, "database-unavailable", "Database unavailable",
                      "the usage ledger cannot be read right now; try again", {"Retry-After": "5"}) from None


DESCRIPTION = f"""The caller's own tenant's usage (its API key's tenant, or its anonymous device's with
`X-Device-Token`), summed per UTC day or per operation, from the usage ledger.

`from` and `to` are UTC calendar days, **both included** (`from=2026-11-01&to=2026-11-30` is November).
Defaults: `from` the first day of the month of `to`, `to` today (UTC): the current month so far. At most
{MAX_DAYS} days. A malformed parameter is 422 `invalid-request`; an impossible date, `from` after `to` or a
longer period is 422 `invalid-period`. Without credentials: 401 `unauthorized`."""


@router.get("/v1/usage", response_model=UsageSummary, description=DESCRIPTION,
            responses=responses(401, 404, 405, 422, 429, 500, 503))
async def get_usage(
    p: PlatformDep,
    caller: IdentityDep,
    first: Annotated[str | None, Query(alias="from", pattern=DATE_PATTERN,
                                       description="first UTC day, YYYY-MM-DD (included)")] = None,
    last: Annotated[str | None, Query(alias="to", pattern=DATE_PATTERN,
                                      description="last UTC day, YYYY-MM-DD (included)")] = None,
    group_by: Annotated[GroupBy, Query(description="one row per UTC day or per operation")] = "day",
) -> UsageSummary:
    if caller.issued_token:  # no API key and no valid device token: nobody whose usage there is
        raise Problem(401, "unauthorized", "Missing credentials", "send your API key as 'Authorization: Bearer "
                      "<key>', or your device token in X-Device-Token", {"WWW-Authenticate": "Bearer"})
    try:
        span = period(first, last, datetime.now(UTC).date())
    except ValueError as exc:
        raise Problem(422, "invalid-period", "Invalid period", str(exc)) from None
    with database():
        rows = await p.ledger.usage(caller.tenant_id, span.start, span.end, group_by)
    return report(caller.tenant_id, span, group_by, rows)
