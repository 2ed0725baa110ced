"""What a finished job is charged (photocraft_common.usage.prices), the price table and database settings,
and the checks on a usage record: pure, no database (tests/platform/test_ledger.py has the real one)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from photocraft_common import settings as settings_module
from photocraft_common.keyring import Keyring
from photocraft_common.operations import OPERATIONS
from photocraft_common.settings import DatabaseMissing, PlatformSettings, local_database_url
from photocraft_common.tiers import Tier
from photocraft_common.usage.ledger import Usage
from photocraft_common.usage.prices import DEFAULT_PRICES, Outcome, charge, charged, check_prices

PRO = Tier.PRO


@pytest.fixture
def environ(monkeypatch):
    for name in [n for n in os.environ if n.startswith("PHOTOCRAFT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(settings_module, "LOCAL_DATABASE_PASSWORD", settings_module.VAR / "no-such-file")
    return lambda **values: [monkeypatch.setenv(k, v) for k, v in values.items()]


@pytest.mark.parametrize(("outcome", "stages_run", "units"), [
    (Outcome.COMPLETED, 3, 4),  # restore for pro: its price
    (Outcome.COMPLETED, 0, 4),  # every stage reused from an earlier job: the result is still delivered
    (Outcome.CANCELLED, 1, 4),  # a stage ran before the cancel: the work was done
    (Outcome.CANCELLED, 0, 0),  # cancelled before any stage ran
    (Outcome.FAILED, 2, 0),
    (Outcome.NO_OP, 2, 0),  # e.g. nothing to restore, or retouch without a face
])
def test_what_a_job_is_charged(outcome, stages_run, units):
    assert charge(PRO, "restore", outcome, stages_run) == units
    assert charged(outcome, stages_run) is (units > 0)


def test_prices_differ_by_tier_and_operation():
    assert charge(Tier.ENTERPRISE, "remove-background", "completed", 1) == 1
    assert charge(Tier.ENTERPRISE, "text-to-image", "completed", 1) == 4
    assert charge(Tier.FREE, "text-to-image", "completed", 1) == 0  # recorded, never billed
    table = {tier: dict.fromkeys(OPERATIONS, 3) for tier in Tier}
    table[Tier.PRO]["enhance"] = 7
    assert charge(PRO, "enhance", Outcome.COMPLETED, 2, check_prices(table)) == 7


def test_charge_refuses_what_it_cannot_price():
    with pytest.raises(KeyError, match="blur"):
        charge(PRO, "blur", Outcome.FAILED, 0)  # even where it would charge 0
    with pytest.raises(ValueError, match="stages_run"):
        charge(PRO, "restore", Outcome.COMPLETED, -1)
    with pytest.raises(ValueError):
        charge(PRO, "restore", "finished", 1)


def test_the_default_table_prices_every_tier_and_operation():
    assert check_prices(DEFAULT_PRICES) == {t: dict(DEFAULT_PRICES[t]) for t in Tier}
    assert set(DEFAULT_PRICES) == set(Tier) and all(set(row) == set(OPERATIONS) for row in DEFAULT_PRICES.values())


def test_the_price_table_from_the_environment(environ):
    table = {tier: dict.fromkeys(OPERATIONS, 2) for tier in Tier}
    environ(PHOTOCRAFT_PRICES=json.dumps(table))
    assert PlatformSettings().prices[PRO]["restore"] == 2
    del table[Tier.FREE]["colorize"]
    environ(PHOTOCRAFT_PRICES=json.dumps(table))
    with pytest.raises(ValidationError, match="PHOTOCRAFT_PRICES: tier free has no price for colorize"):
        PlatformSettings()
    table[Tier.FREE]["colorize"] = -1
    environ(PHOTOCRAFT_PRICES=json.dumps(table))
    with pytest.raises(ValidationError, match="whole number >= 0"):
        PlatformSettings()
    environ(PHOTOCRAFT_PRICES='{"gold": {}}')
    with pytest.raises(ValidationError, match="gold"):
        PlatformSettings()


def test_database_url(environ, tmp_path, monkeypatch):
    assert PlatformSettings().database.url is None  # no local password yet: nothing to connect to
    with pytest.raises(DatabaseMissing, match="PHOTOCRAFT_DATABASE__URL"):
        PlatformSettings().database.required_url()
    password = tmp_path / "postgres-password"
    password.write_text("s3cr/t@x\n")
    monkeypatch.setattr(settings_module, "LOCAL_DATABASE_PASSWORD", password)
    assert local_database_url(password) == "postgresql+asyncpg://photocraft:s3cr%2Ft%40x@127.0.0.1:15432/photocraft"
    assert PlatformSettings().database.required_url() == local_database_url(password)
    environ(PHOTOCRAFT_PROFILE="production", PHOTOCRAFT_S3__ACCESS_KEY_ID="k", PHOTOCRAFT_S3__SECRET_ACCESS_KEY="s",
            PHOTOCRAFT_KEYRING=Keyring.generate().to_json())
    production = PlatformSettings()  # starts: a service that needs no database runs without one
    with pytest.raises(DatabaseMissing, match="PHOTOCRAFT_DATABASE__URL"):
        production.database.required_url()  # production never falls back to the local stack's


def test_database_url_is_checked_without_echoing_it(environ):
    environ(PHOTOCRAFT_DATABASE__URL="postgresql://app:hunter2@db.internal:5432/photocraft")
    assert PlatformSettings().database.required_url() == "postgresql+asyncpg://app:hunter2@db.internal:5432/photocraft"
    for bad in ("mysql://app:hunter2@db/photocraft", "postgresql://app:hunter2@db.internal"):
        environ(PHOTOCRAFT_DATABASE__URL=bad)
        with pytest.raises(ValidationError, match="PHOTOCRAFT_DATABASE__URL") as caught:
            PlatformSettings()
        assert "hunter2" not in str(caught.value)


def usage(**changes) -> Usage:
    values = dict(tenant="acme", job_id="j1", operation="restore", tier="pro", outcome="completed", stages_run=2,
                  stages_reused=1, megapixels_in=0.26, megapixels_out=1.05, finished_at=datetime.now(UTC),
                  compute_s={"oidn": 0.4})
    return Usage(**{**values, **changes})


def test_a_usage_record_checks_its_values():
    assert usage().tier is Tier.PRO and usage().outcome is Outcome.COMPLETED
    for bad in [dict(tier="gold"), dict(outcome="done"), dict(stages_run=-1), dict(megapixels_in=-0.1),
                dict(compute_s={"oidn": float("nan")}), dict(finished_at=datetime(2026, 11, 30)), dict(job_id="")]:
        with pytest.raises(ValueError):
            usage(**bad)
