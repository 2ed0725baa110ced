"""``photocraft-usage-export``: the usage ledger's charged rows to Stripe, as Billing meter events.

    photocraft-usage-export --once          send what is pending, then exit (the chart's CronJob)
    photocraft-usage-export --every 300     send what is pending, then again every 300 s, until stopped

What is sent, and why a retry or a crash never bills twice: photocraft_common/usage/exporter.py and
docs/billing.md. Settings: ``PHOTOCRAFT_STRIPE__*`` (the key, ``API_BASE`` for stripe-mock, the meter's
event name, the batch size, the SDK's retries) and ``PHOTOCRAFT_DATABASE__URL``. Stopping it at any
point (SIGTERM, SIGKILL) is safe: the next run resumes. Logs one line per event sent and one per pass.

Exit status: 0 all pending rows sent; 1 Stripe unreachable or failing after the SDK's retries, or the
database failing (with ``--once``), or pending rows too old for Stripe; 2 bad settings, or Stripe
refused the key or a request.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import stripe
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError

from photocraft_common import logs
from photocraft_common.database import make_engine
from photocraft_common.settings import DatabaseMissing, PlatformSettings, StripeKeyMissing, StripeSettings
from photocraft_common.usage.exporter import Exporter, MeterEvent, Pending, Report

log = logging.getLogger("photocraft.usage_export")
# Errors worth another pass later (the SDK has retried them already); any other StripeError is final.
TRANSIENT = (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError)
OK, FAILED, REFUSED = 0, 1, 2


def transient(error: stripe.StripeError) -> bool:
    """Whether ``error`` may pass by itself (network, rate limit, Stripe's 5xx) rather than needing a fix."""
    return isinstance(error, TRANSIENT) or (error.http_status or 0) >= 500


def stripe_sender(settings: StripeSettings, api_key: str):
    """An async ``send(MeterEvent)`` that creates the event with the stripe SDK (in a thread: the SDK's
    client is blocking), retried by the SDK ``settings.max_network_retries`` times. Raises stripe.StripeError."""
    client = stripe.StripeClient(api_key, base_addresses={"api": settings.api_base} if settings.api_base else None,
                                 max_network_retries=settings.max_network_retries)

    async def send(event: MeterEvent) -> None:
        await asyncio.to_thread(client.v1.billing.meter_events.create, event.params())
    return send


def sent(row: Pending, event: MeterEvent) -> None:
    log.info("sent %s: tenant %s, customer %s, %d units", event.identifier, row.tenant, event.customer, event.value)


def outcome(report: Report) -> int:
    """Log ``report``'s summary; FAILED when rows are too old for Stripe (they need the operator), else OK."""
    log.info("export pass done: %d meter events sent", report.sent)
    if report.too_old:
        log.error("%d pending ledger rows finished over 35 days ago: Stripe refuses them; see docs/billing.md",
                  report.too_old)
        return FAILED
    return OK


async def export(settings: PlatformSettings, api_key: str, every: float | None) -> int:
    """One pass (``every`` None) or a pass every ``every`` seconds until a final error; returns the exit status."""
    engine = make_engine(settings.database)
    exporter = Exporter(engine, stripe_sender(settings.stripe, api_key), settings.stripe.meter_event_name,
                        settings.stripe.batch_size)
    try:
        while True:
            try:
                status = outcome(await exporter.export_pending(on_sent=sent))
            except stripe.StripeError as exc:
                if not transient(exc):
                    log.error("Stripe refused (HTTP %s, %s): %s; fix it and run again", exc.http_status,
                              type(exc).__name__, exc.user_message or exc)
                    return REFUSED
                log.error("Stripe failed after %d retries (%s): %s; the rest stays pending",
                          settings.stripe.max_network_retries, type(exc).__name__, exc.user_message or exc)
                status = FAILED
            except (SQLAlchemyError, OSError) as exc:  # the database out of reach: nothing was lost
                log.error("the database failed (%s): %s; the rest stays pending", type(exc).__name__, exc)
                status = FAILED
            if every is None:
                return status
            await asyncio.sleep(every)
    finally:
        await engine.dispose()


def positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="send what is pending, then exit")
    mode.add_argument("--every", type=positive, metavar="SECONDS", help="send what is pending every SECONDS")
    args = parser.parse_args()
    try:
        settings = PlatformSettings()
        api_key = settings.required_stripe_key()
        settings.database.required_url()
    except (ValidationError, StripeKeyMissing, DatabaseMissing) as exc:
        print(f"photocraft-usage-export: {exc}", file=sys.stderr)
        raise SystemExit(REFUSED) from None
    logs.configure("usage-export", settings.log_level, settings.log_format)
    logging.getLogger("stripe").setLevel(logging.WARNING)  # its line per request: ours says more
    raise SystemExit(asyncio.run(export(settings, api_key, args.every)))


if __name__ == "__main__":
    main()
