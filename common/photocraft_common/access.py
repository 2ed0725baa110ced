"""Who may read a job or a batch: one policy for the gateway's HTTP routes and the notifier's feeds.

A record (a job or a batch) is readable with its own token (handed out when it
was submitted), with an API key of its tenant, or with a device token of its
(anonymous) tenant. The gateway maps the outcome to 401/403/404 problems, the
notifier to WebSocket close codes 4401/4403/4404.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from .accounts import Accounts


class Access(Enum):
    GRANTED = "granted"
    MISSING = "missing"  # no credential at all
    NOT_FOUND = "not-found"  # no such record (expired, or never existed)
    DENIED = "denied"  # a credential, but not one of this record's


class Owned(Protocol):
    tenant_id: str

    def token_matches(self, token: str) -> bool: ...


async def access(record: Owned | None, accounts: Accounts, bearer: str = "", device_token: str = "") -> Access:
    """Whether ``bearer`` (the record's token or an API key) or ``device_token`` opens ``record``.

    A missing credential is reported before an unknown record, so that a caller without
    credentials learns nothing about which ids exist.
    """
    if not bearer and not device_token:
        return Access.MISSING
    if record is None:
        return Access.NOT_FOUND
    if bearer and record.token_matches(bearer):
        return Access.GRANTED
    owner = await accounts.by_key(bearer) if bearer else accounts.by_device_token(device_token)
    return Access.GRANTED if owner is not None and owner.tenant_id == record.tenant_id else Access.DENIED
