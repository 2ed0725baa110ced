"""Who is asking: a tenant with an API key (free, pro or enterprise), or an anonymous device.

Tenants, their API keys and partner registrations live in PostgreSQL (photocraft_common.tables,
made by the migrations; the system of record, docs/billing.md):

- ``tenants``: ``tenant_id`` -> its tier (free, pro or enterprise) and, for billing, its Stripe
  customer id (``cus_...``, unique, or none).
- ``api_keys``: each key's sha256 (64 hex digits; the key itself is never stored) -> its tenant.
  Keys are random secrets (``pc_`` + 43 characters) shown once when created (``photocraft-tenants
  create``); clients send them as ``Authorization: Bearer <key>``. A key has no tier of its own: it
  has its tenant's, so changing the tier changes every key of the tenant at once.
- ``partners``: tenants registered to send jobs over Kafka; the topic they write to says who they
  are (see topics.PARTNER_REQUESTS, docs/partners.md).

Until issue 14 these lived in Redis (``photocraft:apikey:<sha256>``, ``photocraft:partner:<tenant>``);
account_move.py moves any that are left there, once (``make up`` runs it).

Without a key a client is an anonymous device (tier ``anonymous``). Its
device token, sent as ``X-Device-Token``, is ``<kid>.<signed>``: a random device
id signed (itsdangerous, timed, salted) with the key ``kid`` of the
installation's keyring (keyring.py). New tokens are signed with the current key;
a token is valid for a year while the keyring still holds its key. A request
without a valid one is given a fresh token in the response's ``X-Device-Token``
header. Device tokens need no database.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from itsdangerous import BadData, URLSafeTimedSerializer
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from photocraft_common.keyring import Keyring, KeyringMissing
from photocraft_common.settings import DatabaseMissing
from photocraft_common.tables import api_keys, partners, tenants
from photocraft_common.tiers import Tier

DEVICE_TOKEN_MAX_AGE_S = 365 * 24 * 3600
DEVICE_SALT = "photocraft-device"
KEY_PREFIX = "pc_"
ACCOUNT_TIERS = (Tier.FREE, Tier.PRO, Tier.ENTERPRISE)  # lowest first; anonymous devices have no account
STRIPE_CUSTOMER_PREFIX = "cus_"
DEVICE_PREFIX = "device-"  # anonymous devices' tenant ids: never an account's


class UnknownTenant(LookupError):
    """No tenant of that id (none was ever given a key or registered as a partner)."""


class StripeCustomerTaken(ValueError):
    """The Stripe customer id is another tenant's already."""


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    tier: Tier
    device_id: str = ""  # anonymous devices only
    issued_token: str = ""  # a device token made for this request, to hand back


@dataclass(frozen=True)
class Tenant:
    """A tenant with an account: its tier, its Stripe customer id (None: not billed through Stripe) and
    when it was first created (UTC)."""

    tenant_id: str
    tier: Tier
    stripe_customer_id: str | None
    created_at: datetime


def key_sha256(key: str) -> str:
    """The stored form of an API key: its sha256, 64 lowercase hex digits."""
    return hashlib.sha256(key.encode()).hexdigest()


def account_tier(tier: Tier | str) -> Tier:
    """``tier`` as a Tier of accounts; raises ValueError for ``anonymous`` or an unknown name."""
    found = Tier(tier)
    if found not in ACCOUNT_TIERS:
        raise ValueError(f"a tenant's tier is one of {', '.join(ACCOUNT_TIERS)}, not {found}")
    return found


def highest(tiers) -> Tier:
    """The highest of account ``tiers`` (free < pro < enterprise); ValueError when there is none."""
    return max((account_tier(t) for t in tiers), key=ACCOUNT_TIERS.index)


async def upsert_tenant(connection: AsyncConnection, tenant_id: str, tier: Tier) -> None:
    """Create ``tenant_id`` with ``tier``, or set the tier of the existing tenant. ValueError: an empty id or
    one of an anonymous device's (``device-...``), or the ``anonymous`` tier."""
    if not tenant_id or tenant_id.startswith(DEVICE_PREFIX):
        raise ValueError(f"a tenant id must be non-empty and not start with {DEVICE_PREFIX!r}: {tenant_id!r}")
    statement = insert(tenants).values(tenant_id=tenant_id, tier=account_tier(tier).value)
    await connection.execute(statement.on_conflict_do_update(index_elements=[tenants.c.tenant_id],
                                                             set_={"tier": statement.excluded.tier}))


class Accounts:
    """Tenants, API keys and partners in PostgreSQL on ``engine`` (an asyncpg AsyncEngine:
    photocraft_common.database.make_engine); device tokens with ``keyring``.

    Without a keyring the device methods raise KeyringMissing (tools that only manage keys need none);
    without an engine the account methods raise DatabaseMissing (device tokens need none).
    Database methods raise SQLAlchemy's errors (e.g. OperationalError when PostgreSQL is away).
    """

    def __init__(self, engine: AsyncEngine | None, keyring: Keyring | None = None) -> None:
        self._engine = engine
        self._keyring = keyring
        self._signers = {kid: URLSafeTimedSerializer(secret.get_secret_value(), salt=DEVICE_SALT)
                         for kid, secret in keyring.keys.items()} if keyring else {}

    async def create_key(self, tenant_id: str, tier: Tier) -> str:
        """A new API key for ``tenant_id``, returned once and stored hashed. The tenant is created with
        ``tier``, or an existing one is given ``tier`` (all its keys with it). ValueError: see
        ``upsert_tenant``."""
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        async with self._db.begin() as connection:
            await upsert_tenant(connection, tenant_id, tier)
            await connection.execute(sa.insert(api_keys).values(key_sha256=key_sha256(key), tenant_id=tenant_id))
        return key

    async def revoke_key(self, key: str) -> bool:
        """Delete ``key``; True if it existed. Its tenant stays, with its other keys."""
        async with self._db.begin() as connection:
            deleted = await connection.execute(sa.delete(api_keys).where(api_keys.c.key_sha256 == key_sha256(key)))
        return deleted.rowcount > 0

    async def by_key(self, key: str) -> Identity | None:
        """The tenant (and its tier) of API key ``key``, or None when it is unknown or revoked: one indexed
        query, api_keys joined to tenants. A string without the ``pc_`` prefix is no key of ours and costs
        no query."""
        if not key.startswith(KEY_PREFIX):
            return None
        query = (sa.select(tenants.c.tenant_id, tenants.c.tier)
                 .select_from(api_keys.join(tenants)).where(api_keys.c.key_sha256 == key_sha256(key)))
        async with self._db.connect() as connection:
            found = (await connection.execute(query)).first()
        return Identity(found.tenant_id, Tier(found.tier)) if found else None

    async def register_partner(self, tenant_id: str, tier: Tier) -> None:
        """Register ``tenant_id`` as a partner (again: no change), created with or set to ``tier``."""
        async with self._db.begin() as connection:
            await upsert_tenant(connection, tenant_id, tier)
            await connection.execute(insert(partners).values(tenant_id=tenant_id).on_conflict_do_nothing())

    async def partner(self, tenant_id: str) -> Identity | None:
        """The partner tenant ``tenant_id``, or None when it is not registered as a partner."""
        query = (sa.select(tenants.c.tier).select_from(partners.join(tenants))
                 .where(partners.c.tenant_id == tenant_id))
        async with self._db.connect() as connection:
            tier = (await connection.execute(query)).scalar()
        return Identity(tenant_id, Tier(tier)) if tier else None

    async def tenant(self, tenant_id: str) -> Tenant | None:
        """The tenant ``tenant_id`` (tier, Stripe customer id), or None when there is none."""
        async with self._db.connect() as connection:
            found = (await connection.execute(sa.select(tenants).where(tenants.c.tenant_id == tenant_id))).first()
        return Tenant(found.tenant_id, Tier(found.tier), found.stripe_customer_id, found.created_at) if found else None

    async def set_stripe_customer(self, tenant_id: str, customer_id: str | None) -> None:
        """Bill ``tenant_id`` as Stripe customer ``customer_id`` (``cus_...``), or, with None, no longer
        through Stripe. Raises ValueError for an id without the ``cus_`` prefix, UnknownTenant,
        StripeCustomerTaken when another tenant has that customer id."""
        if customer_id is not None and (not customer_id.startswith(STRIPE_CUSTOMER_PREFIX)
                                        or len(customer_id) == len(STRIPE_CUSTOMER_PREFIX)):
            raise ValueError(f"a Stripe customer id starts with {STRIPE_CUSTOMER_PREFIX!r}: {customer_id!r}")
        statement = (sa.update(tenants).where(tenants.c.tenant_id == tenant_id)
                     .values(stripe_customer_id=customer_id))
        try:
            async with self._db.begin() as connection:
                updated = await connection.execute(statement)
        except IntegrityError:  # uq_tenants_stripe_customer_id
            raise StripeCustomerTaken(f"Stripe customer {customer_id} is another tenant's") from None
        if updated.rowcount == 0:
            raise UnknownTenant(f"no tenant {tenant_id!r}")

    @property
    def _db(self) -> AsyncEngine:
        if self._engine is None:
            raise DatabaseMissing("tenants, API keys and partners need the database (PostgreSQL)")
        return self._engine

    def by_device_token(self, token: str) -> Identity | None:
        """The device whose token ``token`` is, or None: malformed, forged, older than a year, or signed
        with a key the keyring no longer holds."""
        kid, _, signed = token.partition(".")
        signer = self._device_signers().get(kid)
        if signer is None:
            return None
        try:
            device_id = signer.loads(signed, max_age=DEVICE_TOKEN_MAX_AGE_S)
        except BadData:  # forged, expired, malformed
            return None
        if not isinstance(device_id, str) or not device_id:
            return None
        return Identity(f"{DEVICE_PREFIX}{device_id}", Tier.ANONYMOUS, device_id=device_id)

    def new_device(self) -> Identity:
        """A new anonymous device, with its token signed by the keyring's current key."""
        device_id, kid = secrets.token_hex(12), self._keyring.current if self._keyring else ""
        token = f"{kid}.{self._device_signers()[kid].dumps(device_id)}"
        return Identity(f"{DEVICE_PREFIX}{device_id}", Tier.ANONYMOUS, device_id=device_id, issued_token=token)

    def _device_signers(self) -> dict[str, URLSafeTimedSerializer]:
        if self._keyring is None:
            raise KeyringMissing("device tokens need the installation's keyring")
        return self._signers
