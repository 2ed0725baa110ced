"""``photocraft-tenants``: API keys for tenants with accounts.

    photocraft-tenants create acme --tier pro     prints a new API key (shown this once)
    photocraft-tenants revoke pc_...              the key stops working at once
    photocraft-tenants partner acme --tier pro    lets acme send jobs over Kafka: registers it
                                                  and creates its two topics (docs/partners.md)

Keys are stored hashed (sha256) in Redis; see photocraft_common/accounts.py.
"""

from __future__ import annotations

import argparse
import asyncio

from photocraft_common.accounts import Accounts
from photocraft_common.bootstrap import ensure_partner_topics
from photocraft_common.redis_client import make_redis
from photocraft_common.tiers import Tier
from photocraft_common.topics import PARTNER_EVENTS, PARTNER_REQUESTS

from .settings import GatewaySettings


async def run(args: argparse.Namespace) -> None:
    settings = GatewaySettings()
    redis = make_redis(settings.redis)
    accounts = Accounts(redis)
    try:
        if args.command == "create":
            print(await accounts.create_key(args.tenant, Tier(args.tier)))
        elif args.command == "partner":
            await ensure_partner_topics(settings, args.tenant)
            await accounts.register_partner(args.tenant, Tier(args.tier))
            print(PARTNER_REQUESTS.format(tenant=args.tenant), PARTNER_EVENTS.format(tenant=args.tenant))
        elif not await accounts.revoke_key(args.key):
            raise SystemExit("no such key")
    finally:
        await redis.aclose()


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
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
