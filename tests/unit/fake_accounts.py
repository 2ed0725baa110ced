"""An in-process stand-in for photocraft_common.accounts.Accounts' database half, for unit tests that
need API keys or partners but no PostgreSQL (tests/platform/test_accounts.py tests the real one).
Device tokens are the real code: only the methods that query the database are replaced."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from photocraft_common.accounts import KEY_PREFIX, Accounts, Identity, Tenant, key_sha256
from photocraft_common.keyring import Keyring
from photocraft_common.tiers import Tier


class MemoryAccounts(Accounts):
    """Tenants, keys (by sha256) and partners in dicts, with the real methods' meaning (a key has its
    tenant's tier; creating a key or a partner sets the tenant's tier)."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        super().__init__(None, keyring)
        self.tenants: dict[str, Tenant] = {}
        self.keys: dict[str, str] = {}  # sha256 -> tenant
        self.partners: set[str] = set()

    def _upsert(self, tenant_id: str, tier: Tier) -> None:
        old = self.tenants.get(tenant_id)
        self.tenants[tenant_id] = Tenant(tenant_id, Tier(tier), old and old.stripe_customer_id,
                                         old.created_at if old else datetime.now(UTC))

    async def create_key(self, tenant_id: str, tier: Tier) -> str:
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self._upsert(tenant_id, tier)
        self.keys[key_sha256(key)] = tenant_id
        return key

    async def revoke_key(self, key: str) -> bool:
        return self.keys.pop(key_sha256(key), None) is not None

    async def by_key(self, key: str) -> Identity | None:
        tenant_id = self.keys.get(key_sha256(key))
        return Identity(tenant_id, self.tenants[tenant_id].tier) if tenant_id else None

    async def register_partner(self, tenant_id: str, tier: Tier) -> None:
        self._upsert(tenant_id, tier)
        self.partners.add(tenant_id)

    async def partner(self, tenant_id: str) -> Identity | None:
        return Identity(tenant_id, self.tenants[tenant_id].tier) if tenant_id in self.partners else None

    async def tenant(self, tenant_id: str) -> Tenant | None:
        return self.tenants.get(tenant_id)
