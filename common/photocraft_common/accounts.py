"""Who is asking: a tenant with an API key (free, pro or enterprise), or an anonymous device.

API keys are random secrets (``pc_`` + 43 characters) shown once when created
(``photocraft-tenants create``); Redis keeps only their sha256:
``photocraft:apikey:<sha256>`` -> {tenant, tier}. Clients send them as
``Authorization: Bearer <key>``.

Partners sending jobs over Kafka are registered tenants
(``photocraft:partner:<tenant>`` -> {tier}); the topic they write to says who
they are (see topics.PARTNER_REQUESTS).

Without a key a client is an anonymous device (tier ``anonymous``). Its
device token, sent as ``X-Device-Token``, is a random device id signed with
the gateway's secret (itsdangerous); a request without a valid one is given a
fresh token in the response's ``X-Device-Token`` header.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.asyncio import Redis

from photocraft_common.tiers import Tier

DEVICE_TOKEN_MAX_AGE_S = 365 * 24 * 3600


@dataclass(frozen=True)
class Identity:
    tenant_id: str
    tier: Tier
    device_id: str = ""  # anonymous devices only
    issued_token: str = ""  # a device token made for this request, to hand back


def api_key_record(key: str) -> str:
    return f"photocraft:apikey:{hashlib.sha256(key.encode()).hexdigest()}"


def partner_record(tenant_id: str) -> str:
    return f"photocraft:partner:{tenant_id}"


class Accounts:
    def __init__(self, redis: Redis, device_secret: str) -> None:
        self._redis = redis
        self._devices = URLSafeTimedSerializer(device_secret, salt="photocraft-device")

    async def create_key(self, tenant_id: str, tier: Tier) -> str:
        """A new API key for ``tenant_id``; returned once, stored hashed."""
        key = "pc_" + secrets.token_urlsafe(32)
        await self._redis.hset(api_key_record(key), mapping={"tenant": tenant_id, "tier": tier.value,
                                                              "created_at": time.time()})
        return key

    async def revoke_key(self, key: str) -> bool:
        return bool(await self._redis.delete(api_key_record(key)))

    async def by_key(self, key: str) -> Identity | None:
        found = await self._redis.hgetall(api_key_record(key))
        return Identity(found[b"tenant"].decode(), Tier(found[b"tier"].decode())) if found else None

    async def register_partner(self, tenant_id: str, tier: Tier) -> None:
        await self._redis.hset(partner_record(tenant_id), mapping={"tier": tier.value, "created_at": time.time()})

    async def partner(self, tenant_id: str) -> Identity | None:
        """The partner tenant ``tenant_id``, or None when it is not registered as a partner."""
        tier = await self._redis.hget(partner_record(tenant_id), "tier")
        return Identity(tenant_id, Tier(tier.decode())) if tier else None

    def by_device_token(self, token: str) -> Identity | None:
        try:
            device_id = self._devices.loads(token, max_age=DEVICE_TOKEN_MAX_AGE_S)
        except BadSignature:
            return None
        return Identity(f"device-{device_id}", Tier.ANONYMOUS, device_id=device_id)

    def new_device(self) -> Identity:
        device_id = secrets.token_hex(12)
        return Identity(f"device-{device_id}", Tier.ANONYMOUS, device_id=device_id,
                        issued_token=self._devices.dumps(device_id))
