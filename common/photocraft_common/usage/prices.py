"""The price table and what a finished job is charged, as pure functions (no I/O).

Prices are whole **units** per job, per tier and operation (``PlatformSettings.prices``,
``PHOTOCRAFT_PRICES``). Units are what the ledger records and what Stripe bills: a Stripe meter
event's value is a whole number, and the money per unit is the Stripe price's, not ours. Anonymous
and free tenants are not billed (0 units), but their usage is recorded all the same.

A job is charged its operation's price when it completed and changed the photo, or was cancelled
after a stage ran. It is charged nothing when it failed, was cancelled before any stage ran, or
completed as a no-op (no stage changed the photo, e.g. retouch of a photo without a face): the same
three cases in which its edit goes back to the daily quota (the scheduler's ``outcomes.edit_returned``).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

from ..operations import OPERATIONS
from ..tiers import Tier

# tier -> operation -> units per job
Prices = Mapping[Tier, Mapping[str, int]]


class Outcome(StrEnum):
    """How a job ended, for the ledger: ``no-op`` is a completed job that changed nothing."""

    COMPLETED = "completed"
    NO_OP = "no-op"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Units of work, roughly relative CPU/GPU time per photo: one model, two or three, or an analysis
# followed by as many as five models (restore) or a diffusion model (text-to-image).
OPERATION_UNITS = {"remove-background": 1, "retouch": 1, "colorize": 2, "enhance": 2, "restore": 4,
                   "text-to-image": 4}
UNBILLED_TIERS = (Tier.ANONYMOUS, Tier.FREE)
DEFAULT_PRICES: Prices = MappingProxyType({
    tier: MappingProxyType({op: 0 if tier in UNBILLED_TIERS else units for op, units in OPERATION_UNITS.items()})
    for tier in Tier})


def check_prices(prices: Mapping[str, Mapping[str, int]]) -> dict[Tier, dict[str, int]]:
    """``prices`` as a complete table: every tier, every operation of ``operations.OPERATIONS``, whole units
    >= 0. Raises ValueError naming the first tier or operation that is unknown, missing or badly priced."""
    table: dict[Tier, dict[str, int]] = {}
    for name, row in prices.items():
        try:
            tier = Tier(name)
        except ValueError:
            raise ValueError(f"unknown tier {name!r}; known: {', '.join(Tier)}") from None
        unknown = sorted(set(row) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"tier {tier}: unknown operation {unknown[0]!r}; known: {', '.join(sorted(OPERATIONS))}")
        for op, units in row.items():
            if isinstance(units, bool) or not isinstance(units, int) or units < 0:
                raise ValueError(f"tier {tier}, operation {op}: units must be a whole number >= 0, not {units!r}")
        table[tier] = dict(row)
    for tier in Tier:
        missing = sorted(set(OPERATIONS) - set(table.get(tier, {})))
        if tier not in table or missing:
            raise ValueError(f"tier {tier} has no price for {missing[0] if tier in table else 'any operation'}: "
                             "the table must price every operation of every tier")
    return table


def charged(outcome: Outcome, stages_run: int) -> bool:
    """Whether a job that ended with ``outcome`` after ``stages_run`` stages ran (handed to a worker)
    is charged at all. Raises ValueError for a negative count."""
    if stages_run < 0:
        raise ValueError(f"stages_run must be >= 0, not {stages_run}")
    return outcome is Outcome.COMPLETED or (outcome is Outcome.CANCELLED and stages_run > 0)


def charge(tier: Tier, operation: str, outcome: Outcome, stages_run: int, prices: Prices = DEFAULT_PRICES) -> int:
    """Units charged for one finished job: ``prices[tier][operation]`` when ``charged``, else 0.

    Raises KeyError naming the tier or operation when ``prices`` has no price for it (a table passed
    through ``check_prices`` has all), ValueError for a negative ``stages_run``.
    """
    row = prices.get(Tier(tier))
    if row is None or operation not in row:
        raise KeyError(f"no price for tier {tier}, operation {operation!r}")
    return row[operation] if charged(Outcome(outcome), stages_run) else 0
