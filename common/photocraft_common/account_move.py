"""The one-time move of accounts from Redis to PostgreSQL (issue 14); ``make up`` runs it after the
migrations (infra/stack.py), and running it again changes nothing.

Before, Redis kept ``photocraft:apikey:<sha256>`` -> {tenant, tier, created_at} and
``photocraft:partner:<tenant>`` -> {tier, created_at} (hashes; created_at in Unix seconds). ``plan_move``
turns them into rows of ``tenants``, ``api_keys`` and ``partners`` (no I/O): a tenant's tier is the
highest that its keys and partner record name. ``move_from_redis`` inserts the rows, leaving rows that
are there already as they are (ON CONFLICT DO NOTHING: PostgreSQL wins), and only once they are
committed deletes the Redis keys it moved. A record it cannot read (a tier that is no account's, no
tenant, a key name that is no sha256) stays in Redis and is reported, never dropped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis.asyncio import Redis
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from .accounts import account_tier, highest
from .tables import api_keys, partners, tenants
from .tiers import Tier

log = logging.getLogger("photocraft.accounts")

API_KEYS = "photocraft:apikey:"
PARTNERS = "photocraft:partner:"
SHA256 = re.compile(r"[0-9a-f]{64}")
DELETE_CHUNK = 500  # Redis keys per DEL


@dataclass
class Move:
    """What to write: ``tenants`` (tenant -> tier, created_at: the earliest of its records), ``api_keys``
    (sha256 -> tenant, created_at), ``partners`` (tenant -> created_at); ``moved``: the Redis keys these
    come from; ``refused``: Redis key -> why it is left where it is."""

    tenants: dict[str, tuple[Tier, datetime]] = field(default_factory=dict)
    api_keys: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    partners: dict[str, datetime] = field(default_factory=dict)
    moved: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def _created(fields: Mapping[str, str], now: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(float(fields["created_at"]), UTC)
    except (KeyError, ValueError, OverflowError):
        return now


def plan_move(records: Mapping[str, Mapping[bytes | str, bytes | str]], now: datetime) -> Move:
    """The rows of ``records`` (Redis key -> its hash's fields, as redis-py returns them); records
    without a readable created_at are dated ``now``. Keys other than the two kinds are refused."""
    move, tiers = Move(), {}
    for key, raw in sorted(records.items()):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if key.startswith(API_KEYS):
            sha, tenant = key.removeprefix(API_KEYS), fields.get("tenant", "")
        elif key.startswith(PARTNERS):
            sha, tenant = None, key.removeprefix(PARTNERS)
        else:
            move.refused[key] = "not an API key or partner record"
            continue
        try:
            tier = account_tier(fields.get("tier", ""))
        except ValueError as exc:
            move.refused[key] = str(exc)
            continue
        if not tenant:
            move.refused[key] = "no tenant"
            continue
        if sha is not None and not SHA256.fullmatch(sha):
            move.refused[key] = "the key's name is not a sha256"
            continue
        created = _created(fields, now)
        tiers.setdefault(tenant, []).append(tier)
        first = move.tenants.get(tenant, (tier, created))[1]
        move.tenants[tenant] = (highest(tiers[tenant]), min(first, created))
        if sha is None:
            move.partners[tenant] = created
        else:
            move.api_keys[sha] = (tenant, created)
        move.moved.append(key)
    return move


async def read_redis(redis: Redis) -> dict[str, dict]:
    """Every API key and partner hash in ``redis`` (SCAN by type, so a partner's request-seen strings,
    ``photocraft:partner:<tenant>:request:<id>``, are never read)."""
    records = {}
    for prefix in (API_KEYS, PARTNERS):
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000, _type="HASH"):
            name = _text(key)
            records[name] = await redis.hgetall(name)
    return records


async def move_from_redis(redis: Redis, engine: AsyncEngine, now: datetime | None = None) -> Move:
    """Move the accounts in ``redis`` to the tables on ``engine`` (one transaction), then delete the moved
    Redis keys; returns what was planned. Idempotent. Raises redis-py's and SQLAlchemy's errors (then
    nothing is deleted from Redis)."""
    move = plan_move(await read_redis(redis), now or datetime.now(UTC))
    if move.tenants:
        async with engine.begin() as connection:
            await connection.execute(insert(tenants).on_conflict_do_nothing(), [
                {"tenant_id": t, "tier": tier.value, "created_at": at} for t, (tier, at) in move.tenants.items()])
            if move.api_keys:
                await connection.execute(insert(api_keys).on_conflict_do_nothing(), [
                    {"key_sha256": sha, "tenant_id": t, "created_at": at} for sha, (t, at) in move.api_keys.items()])
            if move.partners:
                await connection.execute(insert(partners).on_conflict_do_nothing(), [
                    {"tenant_id": t, "created_at": at} for t, at in move.partners.items()])
    for start in range(0, len(move.moved), DELETE_CHUNK):
        await redis.delete(*move.moved[start:start + DELETE_CHUNK])
    for key, why in move.refused.items():
        log.warning("left in Redis, not moved: %s (%s)", key, why)
    return move
