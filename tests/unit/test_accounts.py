"""Accounts' pure parts: the plan of the one-time move from Redis (account_move.plan_move), tiers of
accounts, and what Accounts refuses before any query. The database half runs against the real
PostgreSQL in tests/platform/test_accounts.py."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from fakeredis import FakeAsyncRedis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from photocraft_common.account_move import plan_move, read_redis
from photocraft_common.accounts import Accounts, account_tier, highest, key_sha256, upsert_tenant
from photocraft_common.health import checks
from photocraft_common.settings import DatabaseMissing
from photocraft_common.tiers import Tier
from photocraft_gateway.ratelimit import RateLimitMiddleware, RateLimits

from .fake_accounts import MemoryAccounts

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
SHA_A, SHA_B, SHA_C = key_sha256("pc_a"), key_sha256("pc_b"), key_sha256("pc_c")


def test_tiers_of_accounts_and_the_highest_of_several():
    assert [account_tier(t) for t in ("free", "pro", "enterprise")] == [Tier.FREE, Tier.PRO, Tier.ENTERPRISE]
    for wrong in ("anonymous", "gold", ""):
        with pytest.raises(ValueError):
            account_tier(wrong)
    assert highest(["pro", "free"]) is Tier.PRO and highest([Tier.FREE, Tier.ENTERPRISE, Tier.PRO]) is Tier.ENTERPRISE
    with pytest.raises(ValueError):
        highest([])


def test_the_move_takes_each_tenants_highest_tier_and_earliest_date():
    records = {
        f"photocraft:apikey:{SHA_A}": {b"tenant": b"acme", b"tier": b"free", b"created_at": b"1700000000.5"},
        f"photocraft:apikey:{SHA_B}": {b"tenant": b"acme", b"tier": b"pro", b"created_at": b"1600000000"},
        "photocraft:partner:acme": {b"tier": b"free", b"created_at": b"1750000000"},
        "photocraft:partner:globex": {"tier": "enterprise"},  # no created_at: dated now
        f"photocraft:apikey:{SHA_C}": {b"tenant": b"initech", b"tier": b"enterprise", b"created_at": b"soon"},
    }
    move = plan_move(records, NOW)
    assert move.tenants == {"acme": (Tier.PRO, datetime.fromtimestamp(1600000000, UTC)),
                            "globex": (Tier.ENTERPRISE, NOW), "initech": (Tier.ENTERPRISE, NOW)}
    assert move.api_keys == {SHA_A: ("acme", datetime.fromtimestamp(1700000000.5, UTC)),
                             SHA_B: ("acme", datetime.fromtimestamp(1600000000, UTC)), SHA_C: ("initech", NOW)}
    assert move.partners == {"acme": datetime.fromtimestamp(1750000000, UTC), "globex": NOW}
    assert sorted(move.moved) == sorted(records) and move.refused == {}


def test_records_the_move_cannot_read_stay_and_are_reported():
    records = {
        f"photocraft:apikey:{SHA_A}": {b"tenant": b"acme", b"tier": b"anonymous"},
        f"photocraft:apikey:{SHA_B}": {b"tier": b"pro"},  # no tenant
        "photocraft:apikey:not-a-hash": {b"tenant": b"acme", b"tier": b"pro"},
        "photocraft:partner:": {b"tier": b"pro"},
        "photocraft:quota:acme": {b"n": b"3"},
        f"photocraft:apikey:{SHA_C}": {b"tenant": b"acme", b"tier": b"pro"},
    }
    move = plan_move(records, NOW)
    assert move.moved == [f"photocraft:apikey:{SHA_C}"] and list(move.api_keys) == [SHA_C]
    assert sorted(move.refused) == sorted(set(records) - {f"photocraft:apikey:{SHA_C}"})
    assert "anonymous" in move.refused[f"photocraft:apikey:{SHA_A}"]
    assert move.tenants == {"acme": (Tier.PRO, NOW)}


async def test_reading_redis_takes_the_hashes_and_never_a_partners_request_marks():
    redis = FakeAsyncRedis()
    await redis.hset(f"photocraft:apikey:{SHA_A}", mapping={"tenant": "acme", "tier": "pro"})
    await redis.hset("photocraft:partner:acme", mapping={"tier": "pro"})
    await redis.set("photocraft:partner:acme:request:0123", 1)  # the scheduler's seen-request mark
    await redis.set("photocraft:apikey:stray", "x")
    found = await read_redis(redis)
    assert found == {f"photocraft:apikey:{SHA_A}": {b"tenant": b"acme", b"tier": b"pro"},
                     "photocraft:partner:acme": {b"tier": b"pro"}}
    await redis.aclose()


async def test_accounts_without_a_database_say_so_and_bad_tenants_are_refused_before_any_query():
    accounts = Accounts(None)
    for call in (accounts.create_key("acme", Tier.PRO), accounts.by_key("pc_x"), accounts.partner("acme"),
                 accounts.tenant("acme"), accounts.set_stripe_customer("acme", None)):
        with pytest.raises(DatabaseMissing):
            await call
    assert await accounts.by_key("job-token-not-a-key") is None  # no pc_ prefix: no query
    for tenant, tier in (("", Tier.PRO), ("device-0123", Tier.PRO), ("acme", Tier.ANONYMOUS)):
        with pytest.raises(ValueError):
            await upsert_tenant(None, tenant, tier)
    for customer in ("acme", "cus_", "sub_123"):
        with pytest.raises(ValueError, match="cus_"):
            await accounts.set_stripe_customer("acme", customer)


def test_readiness_checks_postgresql_when_given_an_engine():
    assert list(checks(redis=object(), postgres=object())) == ["redis", "postgres"]


class AwayAccounts(MemoryAccounts):
    async def by_key(self, key: str):
        raise ConnectionRefusedError("PostgreSQL is away")


def test_an_api_key_that_cannot_be_checked_gets_503_never_a_pass():
    app = FastAPI()
    app.state.platform = SimpleNamespace(rate_limits=RateLimits(FakeAsyncRedis(), AwayAccounts(), "9/minute",
                                                                "9/minute"))
    app.add_middleware(RateLimitMiddleware)
    app.add_api_route("/v1/ping", lambda: {"pong": True})
    with TestClient(app) as client:
        refused = client.get("/v1/ping", headers={"Authorization": "Bearer pc_anything"})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
        assert refused.json()["type"] == "/problems/database-unavailable"
        assert client.get("/v1/ping").status_code == 200  # without a key: counted by address, no query
