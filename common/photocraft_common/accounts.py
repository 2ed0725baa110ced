"""Who is asking: a tenant with an API key (free, pro or enterprise), or an anonymous device.

API keys are random secrets (``pc_`` + 43 characters) shown once when created
(``photocraft-tenants create``); Redis keeps only their sha256:
``photocraft:apikey:<sha256>`` -> {tenant, tier}. Clients send them as
``Authorization: Bearer <key>``.

Partners sending jobs over Kafka are registered tenants
(``photocraft:partner:<tenant>`` -> {tier}); the topic they write to says who
they are (see topics.PARTNER_REQUESTS).

Without a key a client is an anonymous device (tier ``anonymous``). Its
device token, sent as ``X-Device-Token``, is ``<kid>.<signed>``: a random device
id signed (itsdangerous, timed, salted) with the key ``kid`` of the
installation's keyring (keyring.py). New tokens are signed with the current key;
a token is valid for a year while the keyring still holds its key. A request
without a valid one is given a fresh token in the response's ``X-Device-Token``
header.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeTimedSerializer
from redis.asyncio import Redis

from photocraft_common.keyring import Keyring, KeyringMissing
from photocraft_common.tiers import Tier

DEVICE_TOKEN_MAX_AGE_S = 365 * 24 * 3600
DEVICE_SALT = "photocraft-device"


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
    """API keys and partners in Redis; device tokens with ``keyring`` (without one, the device methods
    raise KeyringMissing: tools that only manage keys need none)."""

    def __init__(self, redis: Redis, keyring: Keyring | None = None) -> None:
        self._redis = redis
        self._keyring = keyring
        self._signers = {kid: URLSafeTimedSerializer(secret.get_secret_value(), salt=DEVICE_SALT)
                         for kid, secret in keyring.keys.items()} if keyring else {}

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
        return Identity(f"device-{device_id}", Tier.ANONYMOUS, device_id=device_id)

    def new_device(self) -> Identity:
        """A new anonymous device, with its token signed by the keyring's current key."""
        device_id, kid = secrets.token_hex(12), self._keyring.current if self._keyring else ""
        token = f"{kid}.{self._device_signers()[kid].dumps(device_id)}"
        return Identity(f"device-{device_id}", Tier.ANONYMOUS, device_id=device_id, issued_token=token)

    def _device_signers(self) -> dict[str, URLSafeTimedSerializer]:
        if self._keyring is None:
            raise KeyringMissing("device tokens need the installation's keyring")
        return self._signers
