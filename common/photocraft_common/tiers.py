"""Tiers of service and lanes of work.

A tenant has a tier: ``anonymous`` (no account: a signed device token),
``free``, ``pro`` or ``enterprise`` (accounts with API keys). A tier's policy
gives its weight in fair sharing, how many of its tasks may run at once, its
daily quota of edits, the operations it may use and its largest batch.

A job's lane says how much work it is: ``fast``, ``standard`` or ``heavy``.
The scheduler charges each dispatched stage its lane's cost against its
tier's share, so a tier's share is a share of work, not of task count.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, Field


class Tier(StrEnum):
    ANONYMOUS = "anonymous"
    FREE = "free"
    PRO = "pro"
    ENTERPRISE = "enterprise"


class TierPolicy(BaseModel):
    weight: int = Field(ge=1, description="share of the work when every tier is waiting")
    concurrency: int = Field(ge=1, description="tasks of the tier dispatched at once, at most")
    daily_quota: int | None = Field(description="edits per tenant per 24 h; None: no limit")
    operations: list[str] | None = Field(None, description="operations allowed; None: all")
    max_batch: int = Field(50, ge=1, le=50, description="images in one batch, at most")

    def allows(self, operation: str) -> bool:
        return self.operations is None or operation in self.operations


# Pro weighs 6x free and enterprise 2x pro: while pro work waits, a free flood gets a seventh of the
# capacity at most. At 2:6, bench/fairness.py saw a pro batch wait 2.1x longer under a free flood.
DEFAULT_TIERS: dict[Tier, TierPolicy] = {
    Tier.ANONYMOUS: TierPolicy(weight=1, concurrency=4, daily_quota=5, max_batch=5,
                               operations=["remove-background", "enhance", "retouch", "restore", "colorize"]),
    Tier.FREE: TierPolicy(weight=2, concurrency=8, daily_quota=50, max_batch=10),
    Tier.PRO: TierPolicy(weight=12, concurrency=32, daily_quota=2000),
    Tier.ENTERPRISE: TierPolicy(weight=24, concurrency=128, daily_quota=None),
}


class Lane(StrEnum):
    FAST = "fast"
    STANDARD = "standard"
    HEAVY = "heavy"


LANE_COST = {Lane.FAST: 1, Lane.STANDARD: 2, Lane.HEAVY: 4}  # relative work of one stage
BIG_PHOTO_MEGAPIXELS = 12  # a photo larger than this is one lane heavier


def lane_of(operation: str, params: dict, megapixels: float, in_batch: bool) -> Lane:
    """fast: remove-background, retouch; standard: enhance up to x2, colorize; heavy: restore,
    enhance x4, text-to-image, and every job of a batch. Photos over 12 MP go one lane up."""
    if in_batch or operation in ("restore", "text-to-image") or params.get("scale") == 4:
        return Lane.HEAVY
    lane = Lane.FAST if operation in ("remove-background", "retouch") else Lane.STANDARD
    if megapixels > BIG_PHOTO_MEGAPIXELS:
        lane = Lane.STANDARD if lane is Lane.FAST else Lane.HEAVY
    return lane
