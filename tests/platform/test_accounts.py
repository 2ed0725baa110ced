"""Tenants, API keys and partners in the local stack's real PostgreSQL (make up): keys, tiers that belong
to the tenant, partners, Stripe customer ids, the photocraft-tenants tool, the one-time move of the
accounts Redis used to keep, and the services' readiness without PostgreSQL. Every tenant here is this
run's own (a random suffix) and is deleted afterwards (its keys and partner row with it: ON DELETE CASCADE)."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from photocraft_common.account_move import move_from_redis
from photocraft_common.accounts import Accounts, Identity, StripeCustomerTaken, UnknownTenant, key_sha256
from photocraft_common.database import make_engine
from photocraft_common.tables import api_keys, partners, tenants
from photocraft_common.tiers import Tier

from .test_health import free_port, service

TOOL = Path(sys.executable).parent / "photocraft-tenants"


@pytest.fixture
async def names(engine):
    """A maker of tenant ids of this test alone; those tenants are deleted afterwards."""
    made: list[str] = []

    def name(kind: str = "acct") -> str:
        made.append(f"{kind}-test-{secrets.token_hex(4)}")
        return made[-1]
    yield name
    async with engine.begin() as connection:
        await connection.execute(sa.delete(tenants).where(tenants.c.tenant_id.in_(made)))


def tenants_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=60)


async def test_keys_have_their_tenants_tier_and_revoked_keys_stop_at_once(engine, names):
    accounts, acme = Accounts(engine), names()
    first = await accounts.create_key(acme, Tier.FREE)
    assert await accounts.by_key(first) == Identity(acme, Tier.FREE)
    second = await accounts.create_key(acme, Tier.ENTERPRISE)  # the tier is the tenant's: both keys change
    assert await accounts.by_key(first) == await accounts.by_key(second) == Identity(acme, Tier.ENTERPRISE)
    async with engine.connect() as connection:
        stored = set((await connection.execute(sa.select(api_keys.c.key_sha256)
                                                .where(api_keys.c.tenant_id == acme))).scalars())
    assert stored == {key_sha256(first), key_sha256(second)}  # only hashes are stored
    assert await accounts.revoke_key(first) is True
    assert await accounts.by_key(first) is None and await accounts.revoke_key(first) is False
    assert await accounts.by_key(second) == Identity(acme, Tier.ENTERPRISE)
    assert await accounts.by_key("pc_" + secrets.token_urlsafe(32)) is None
    with pytest.raises(ValueError, match="device-"):
        await accounts.create_key(f"device-{secrets.token_hex(4)}", Tier.PRO)


async def test_partners_are_registered_once_with_their_tenants_tier(engine, names):
    accounts, acme = Accounts(engine), names("partner")
    assert await accounts.partner(acme) is None
    key = await accounts.create_key(acme, Tier.FREE)
    assert await accounts.partner(acme) is None  # a tenant with keys is no partner until registered
    await accounts.register_partner(acme, Tier.PRO)
    await accounts.register_partner(acme, Tier.PRO)  # again: no change, no error
    assert await accounts.partner(acme) == Identity(acme, Tier.PRO) == await accounts.by_key(key)


async def test_a_tenants_stripe_customer_is_set_unique_and_cleared(engine, names):
    accounts, acme, globex = Accounts(engine), names(), names()
    await accounts.create_key(acme, Tier.PRO)
    await accounts.create_key(globex, Tier.PRO)
    assert (await accounts.tenant(acme)).stripe_customer_id is None
    customer = f"cus_{secrets.token_hex(6)}"
    await accounts.set_stripe_customer(acme, customer)
    found = await accounts.tenant(acme)
    assert (found.tenant_id, found.tier, found.stripe_customer_id) == (acme, Tier.PRO, customer)
    with pytest.raises(StripeCustomerTaken):
        await accounts.set_stripe_customer(globex, customer)
    assert (await accounts.tenant(globex)).stripe_customer_id is None
    await accounts.set_stripe_customer(acme, None)
    assert (await accounts.tenant(acme)).stripe_customer_id is None
    with pytest.raises(UnknownTenant):
        await accounts.set_stripe_customer(names(), customer)
    assert await accounts.tenant(names()) is None


async def test_the_tenants_tool_creates_revokes_registers_and_bills(engine, names):
    accounts, acme = Accounts(engine), names()
    key = tenants_tool("create", acme, "--tier", "pro").stdout.strip()
    assert await accounts.by_key(key) == Identity(acme, Tier.PRO)
    assert tenants_tool("partner", acme, "--tier", "enterprise").returncode == 0
    assert await accounts.partner(acme) == Identity(acme, Tier.ENTERPRISE)
    customer = f"cus_{secrets.token_hex(6)}"
    assert tenants_tool("billing", acme, "--stripe-customer", customer).returncode == 0
    assert (await accounts.tenant(acme)).stripe_customer_id == customer
    assert tenants_tool("billing", acme, "--clear").returncode == 0
    assert (await accounts.tenant(acme)).stripe_customer_id is None
    refused = {"unknown": tenants_tool("billing", names(), "--stripe-customer", customer),
               "not a customer id": tenants_tool("billing", acme, "--stripe-customer", "acme"),
               "both": tenants_tool("billing", acme, "--stripe-customer", customer, "--clear"),
               "a device's id": tenants_tool("create", f"device-{secrets.token_hex(4)}")}
    assert all(run.returncode != 0 for run in refused.values()), refused
    assert "no tenant" in refused["unknown"].stderr and "cus_" in refused["not a customer id"].stderr
    assert tenants_tool("revoke", key).returncode == 0 and await accounts.by_key(key) is None
    assert tenants_tool("revoke", key).stderr.strip() == "no such key"


async def test_the_move_from_redis_copies_once_and_deletes_what_it_moved(engine, redis, names):
    acme, globex, initech = names("moved"), names("moved"), names("moved")
    keys = {name: "pc_" + secrets.token_urlsafe(32) for name in ("acme-free", "acme-pro", "globex")}
    records = {f"photocraft:apikey:{key_sha256(keys['acme-free'])}": {"tenant": acme, "tier": "free",
                                                                        "created_at": "1700000000"},
               f"photocraft:apikey:{key_sha256(keys['acme-pro'])}": {"tenant": acme, "tier": "pro"},
               f"photocraft:apikey:{key_sha256(keys['globex'])}": {"tenant": globex, "tier": "free"},
               f"photocraft:partner:{acme}": {"tier": "free", "created_at": "1600000000"},
               f"photocraft:partner:{initech}": {"tier": "enterprise"}}
    unreadable = f"photocraft:apikey:{'0' * 64}"  # a tier no account has: left where it is
    seen = f"photocraft:partner:{acme}:request:{secrets.token_hex(16)}"  # the scheduler's mark, a string
    accounts = Accounts(engine)
    await accounts.create_key(globex, Tier.ENTERPRISE)  # already in PostgreSQL: its tier there stands
    for name, fields in records.items():
        await redis.hset(name, mapping=fields)
    await redis.hset(unreadable, mapping={"tenant": names("moved"), "tier": "anonymous"})
    await redis.set(seen, 1, ex=600)
    try:
        move = await move_from_redis(redis, engine)
        assert set(records) <= set(move.moved) and unreadable in move.refused and seen not in move.moved
        assert await redis.exists(*records) == 0 and await redis.exists(unreadable, seen) == 2
        assert await accounts.by_key(keys["acme-free"]) == await accounts.by_key(keys["acme-pro"]) \
            == Identity(acme, Tier.PRO)  # the highest of its keys'
        assert await accounts.by_key(keys["globex"]) == Identity(globex, Tier.ENTERPRISE)
        assert await accounts.partner(acme) == Identity(acme, Tier.PRO)
        assert await accounts.partner(initech) == Identity(initech, Tier.ENTERPRISE)
        assert (await accounts.tenant(acme)).created_at.timestamp() == 1600000000  # its earliest record's
        before = await rows(engine, acme, globex, initech)

        for name, fields in records.items():  # as if an old process wrote them again: still nothing changes
            await redis.hset(name, mapping=fields)
        again = await move_from_redis(redis, engine)
        assert set(records) <= set(again.moved) and await redis.exists(*records) == 0
        assert await rows(engine, acme, globex, initech) == before
        assert not set(records) & set((await move_from_redis(redis, engine)).moved)  # nothing left to move
    finally:
        await redis.delete(*records, unreadable, seen)


async def rows(engine, *tenant_ids: str) -> list:
    async with engine.connect() as connection:
        found = []
        for table in (tenants, api_keys, partners):
            query = sa.select(table).where(table.c.tenant_id.in_(tenant_ids)).order_by(*table.primary_key)
            found.append((await connection.execute(query)).all())
    return found


def test_the_gateway_is_not_ready_without_postgresql(settings, tmp_path):
    url = make_engine(settings.database).url.set(port=free_port()).render_as_string(hide_password=False)
    with service("photocraft-gateway", free_port(), tmp_path / "gateway.log", PHOTOCRAFT_DATABASE__URL=url) as base:
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["failing"] == ["postgres"], ready.text
        refused = httpx.post(f"{base}/v1/jobs", headers={"Authorization": f"Bearer pc_{secrets.token_urlsafe(32)}"},
                             data={"operation": "remove-background"}, timeout=10)
        assert refused.status_code == 503, refused.text  # the key cannot be checked: neither valid nor anonymous
        assert refused.json()["type"] == "/problems/database-unavailable" and refused.headers["retry-after"] == "5"
