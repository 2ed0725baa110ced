"""The Stripe exporter's pure parts: meter events of ledger rows, Stripe's window, the claim's locking, the
settings' refusals and the CLI's exit statuses. The exporter against PostgreSQL and stripe-mock, killed
mid-run: tests/platform/test_stripe_export.py."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta

import pytest
import stripe
from sqlalchemy.dialects import postgresql

from photocraft_common.keyring import Keyring
from photocraft_common.settings import PlatformSettings, S3Settings, StripeKeyMissing, StripeSettings
from photocraft_common.usage import exporter
from photocraft_common.usage.exporter import MeterEvent, Pending, Report, identifier, meter_event, oldest_accepted
from photocraft_scheduler import export

FINISHED = datetime(2026, 11, 2, 10, 30, 15, tzinfo=UTC)


def row(**changes) -> Pending:
    return Pending(**{"id": 41, "job_id": "9f2c41", "tenant": "acme", "units": 4, "finished_at": FINISHED,
                      "customer": "cus_Acme"} | changes)


def test_a_rows_meter_event_carries_its_identifier_units_and_finish_time():
    event = meter_event(row(), "photocraft_units")
    assert event == MeterEvent("photocraft_units", "photocraft-job-9f2c41", "cus_Acme", 4, 1_793_615_415)
    assert event.params() == {"event_name": "photocraft_units", "identifier": "photocraft-job-9f2c41",
                              "timestamp": 1_793_615_415, "payload": {"stripe_customer_id": "cus_Acme", "value": "4"}}
    # the same row always makes the same identifier: a resend is deduplicated by Stripe
    assert meter_event(row(units=9, id=7), "other").identifier == identifier("9f2c41") == "photocraft-job-9f2c41"
    assert identifier("9f2c42") != identifier("9f2c41")


@pytest.mark.parametrize("changes, message", [
    ({"units": 0}, "charged 0 units"), ({"units": -1}, "charged -1 units"),
    ({"finished_at": FINISHED.replace(tzinfo=None)}, "timezone-aware"), ({"customer": ""}, "customer id")])
def test_rows_that_must_not_reach_stripe_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        meter_event(row(**changes), "photocraft_units")


def test_identifiers_need_a_job_id_that_fits_stripes_limit():
    assert len(identifier("f" * 85)) == 100
    for job_id in ("", "f" * 86):
        with pytest.raises(ValueError, match="a job id of 1 to 85 characters"):
            identifier(job_id)


def test_stripes_window_is_35_days_less_a_margin():
    now = datetime(2026, 12, 31, tzinfo=UTC)
    cutoff = oldest_accepted(now)
    assert now - timedelta(days=35) < cutoff < now - timedelta(days=34)
    with pytest.raises(ValueError, match="timezone-aware"):
        oldest_accepted(now.replace(tzinfo=None))


class Statements:
    """Records the statements claim() runs; answers the first with ``rows`` and the second with ``done``."""

    def __init__(self, answers):
        self.answers, self.sql = list(answers), []

    async def execute(self, statement):
        self.sql.append(str(statement.compile(dialect=postgresql.dialect())))
        return Answer(self.answers.pop(0))


class Answer(list):
    def scalars(self):
        return iter(self)


class Record:
    def __init__(self, **values):
        self._mapping = values


async def test_the_claim_locks_rows_for_this_exporter_alone_and_drops_rows_recorded_meanwhile():
    first, second = (Record(id=i, job_id=f"j{i}", tenant="acme", units=1, finished_at=FINISHED, customer="cus_A")
                     for i in (7, 8))
    connection = Statements([[first, second], [7]])  # row 7 was recorded by another exporter meanwhile
    claimed = await exporter.claim(connection, FINISHED - timedelta(days=30), 50)
    assert [r.id for r in claimed] == [8]
    query = connection.sql[0]
    assert "FOR NO KEY UPDATE OF usage_records SKIP LOCKED" in query  # KEY SHARE (the FK check) does not wait
    assert "ORDER BY usage_records.id" in query and "LIMIT" in query
    assert "usage_records.units > " in query and "tenants.stripe_customer_id IS NOT NULL" in query
    assert "NOT (EXISTS" in query and "meter_exports.usage_record_id = usage_records.id" in query


async def test_a_claim_whose_rows_were_all_recorded_meanwhile_claims_again():
    late = Record(id=9, job_id="j9", tenant="acme", units=2, finished_at=FINISHED, customer="cus_A")
    connection = Statements([[late], [9], []])
    assert await exporter.claim(connection, FINISHED, 50) == []
    assert len(connection.sql) == 3


def test_exporters_refuse_an_empty_batch():
    with pytest.raises(ValueError, match="batch_size"):
        exporter.Exporter(None, None, "photocraft_units", batch_size=0)


# -- settings ---------------------------------------------------------------------------------------------------

def production(**stripe_settings) -> PlatformSettings:
    return PlatformSettings(profile="production", keyring=Keyring.generate("k1"),
                            s3=S3Settings(access_key_id="id", secret_access_key="secret"),
                            stripe=StripeSettings(**stripe_settings))


def test_the_exporter_needs_a_key_and_production_a_live_one():
    with pytest.raises(StripeKeyMissing, match="PHOTOCRAFT_STRIPE__API_KEY"):
        production().required_stripe_key()
    for test_mode in ({"api_key": "sk_test_1"}, {"api_key": "rk_test_1"},
                      {"api_key": "rk_live_1", "api_base": "http://127.0.0.1:12111"}):
        with pytest.raises(StripeKeyMissing, match="live-mode"):
            production(**test_mode).required_stripe_key()
    assert production(api_key="rk_live_1").required_stripe_key() == "rk_live_1"
    local = PlatformSettings(profile="local", stripe=StripeSettings(api_key="sk_test_1", api_base="http://h:1"))
    assert local.required_stripe_key() == "sk_test_1"


def test_a_key_that_is_no_secret_key_is_refused_without_echoing_it():
    with pytest.raises(ValueError, match="secret") as error:
        StripeSettings(api_key="pk_live_publishable")
    assert "pk_live_publishable" not in str(error.value)
    assert StripeSettings(api_key="").api_key is None  # an empty variable leaves it unset
    with pytest.raises(ValueError, match="api_base"):
        StripeSettings(api_base="127.0.0.1:12111")  # no scheme


# -- the CLI ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("error, expected", [
    (stripe.APIConnectionError("down"), True), (stripe.RateLimitError("slow", http_status=429), True),
    (stripe.APIError("oops", http_status=500), True), (stripe.AuthenticationError("bad", http_status=401), False),
    (stripe.InvalidRequestError("bad", None, http_status=400), False),
    (stripe.PermissionError("no", http_status=403), False)])
def test_only_passing_stripe_errors_are_retried_later(error, expected):
    assert export.transient(error) is expected


def test_rows_too_old_for_stripe_fail_the_pass():
    assert export.outcome(Report(sent=3, too_old=0)) == export.OK
    assert export.outcome(Report(sent=3, too_old=1)) == export.FAILED


@pytest.mark.parametrize("argv, message", [(["--once"], "PHOTOCRAFT_STRIPE__API_KEY"), (["--every", "0"], "> 0"),
                                           ([], "one of the arguments --once --every is required")])
def test_the_cli_refuses_bad_settings_and_arguments_with_exit_status_2(monkeypatch, capsys, argv, message):
    for name in [n for n in os.environ if n.startswith("PHOTOCRAFT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "argv", ["photocraft-usage-export", *argv])
    with pytest.raises(SystemExit) as exit_:
        export.main()
    assert exit_.value.code == 2 and message in capsys.readouterr().err
