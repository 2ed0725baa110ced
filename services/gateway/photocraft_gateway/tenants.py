"""``photocraft-tenants``: API keys for tenants with accounts.

    photocraft-tenants create acme --tier pro     prints a new API key (shown this once)
    photocraft-tenants revoke pc_...              the key stops working at once
    photocraft-tenants partner acme --tier pro    lets acme send jobs over Kafka: registers it
                                                  and creates its two topics (docs/partners.md)
    photocraft-tenants billing acme --stripe-customer cus_...
                                                  bills acme's usage to that Stripe customer
                                                  (--clear: no longer; docs/billing.md)
    photocraft-tenants usage acme --month 2026-11 [--group-by day|operation] [--csv]
                                                  acme's usage in a month (UTC), as a table or CSV
                                                  (usage_table.py, docs/billing.md)

Tenants (with their tier: ``create`` and ``partner`` set it for every key of the tenant), keys (stored
hashed, sha256) and partners are in PostgreSQL; see photocraft_common/accounts.py.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime

from photocraft_common.accounts import Accounts, UnknownTenant
from photocraft_common.bootstrap import ensure_partner_topics
from photocraft_common.database import make_engine
from photocraft_common.tiers import Tier
from photocraft_common.topics import PARTNER_EVENTS, PARTNER_REQUESTS

from .settings import GatewaySettings
from .usage_table import usage_text


async def run(args: argparse.Namespace) -> None:
    settings = GatewaySettings()
    engine = make_engine(settings.database)
    accounts = Accounts(engine)
    try:
        if args.command == "create":
            print(await accounts.create_key(args.tenant, Tier(args.tier)))
        elif args.command == "partner":
            await ensure_partner_topics(settings, args.tenant)
            await accounts.register_partner(args.tenant, Tier(args.tier))
            print(PARTNER_REQUESTS.format(tenant=args.tenant), PARTNER_EVENTS.format(tenant=args.tenant))
        elif args.command == "billing":
            await accounts.set_stripe_customer(args.tenant, None if args.clear else args.stripe_customer)
        elif not await accounts.revoke_key(args.key):
            raise SystemExit("no such key")
    except (ValueError, UnknownTenant) as exc:  # a bad id or tier, no such tenant, a customer taken
        raise SystemExit(str(exc)) from None
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="a new API key for a tenant")
    create.add_argument("tenant", help="the tenant's id, e.g. acme")
    tiers = [t.value for t in Tier if t is not Tier.ANONYMOUS]
    create.add_argument("--tier", choices=tiers, default="free")
    partner = commands.add_parser("partner", help="register a partner tenant and create its Kafka topics")
    partner.add_argument("tenant")
    partner.add_argument("--tier", choices=tiers, default="pro")
    revoke = commands.add_parser("revoke", help="revoke an API key")
    revoke.add_argument("key")
    billing = commands.add_parser("billing", help="set or clear the Stripe customer a tenant's usage is billed to")
    billing.add_argument("tenant")
    customer = billing.add_mutually_exclusive_group(required=True)
    customer.add_argument("--stripe-customer", metavar="CUS_ID", help="Stripe's id of the customer, cus_...")
    customer.add_argument("--clear", action="store_true", help="bill the tenant through Stripe no longer")
    usage = commands.add_parser("usage", help="a tenant's usage in one month (UTC), from the usage ledger")
    usage.add_argument("tenant")
    usage.add_argument("--month", default=datetime.now(UTC).strftime("%Y-%m"), help="YYYY-MM (default: this one)")
    usage.add_argument("--group-by", choices=["day", "operation"], default="day")
    usage.add_argument("--csv", action="store_true", help="CSV for machines instead of a table")
    args = parser.parse_args()
    if args.command == "usage":
        try:
            print(asyncio.run(usage_text(args.tenant, args.month, args.group_by, args.csv, GatewaySettings())),
                  end="" if args.csv else "\n")
        except ValueError as exc:
            parser.error(str(exc))
        return
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
