"""Who may read a job or a batch: one policy for the gateway's HTTP routes and the notifier's feeds.

A record (a job or a batch) is readable with its own token (handed out when it
was submitted), with an API key of its tenant, or with a device token of its
(anonymous) tenant. A credential that does not open the record gets the answer
that a record that does not exist gets, so that a refusal never confirms that a
job or batch exists. The gateway maps the outcome to 401/404 problems, the
notifier to WebSocket close codes 4401/4404.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from .accounts import Accounts


class Access(Enum):
    GRANTED = "granted"
    MISSING = "missing"  # no credential at all
    # No such record (expired, or never existed), or a credential that does not open it: never told apart.
    NOT_FOUND = "not-found"


class Owned(Protocol):
    tenant_id: str

    def token_matches(self, token: str) -> bool: ...


async def access(record: Owned | None, accounts: Accounts, bearer: str = "", device_token: str = "") -> Access:
    """Whether ``bearer`` (the record's token or an API key) or ``device_token`` opens ``record``.

    A missing credential is reported before an unknown record, and a credential of someone else as an
    unknown record, so that no caller learns which ids exist: an unknown record costs the same owner
    lookup as someone else's.
    """
    if not bearer and not device_token:
        return Access.MISSING
    if record is not None and bearer and record.token_matches(bearer):
        return Access.GRANTED
    owner = await accounts.by_key(bearer) if bearer else accounts.by_device_token(device_token)
    opens = record is not None and owner is not None and owner.tenant_id == record.tenant_id
    return Access.GRANTED if opens else Access.NOT_FOUND
