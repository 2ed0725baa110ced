"""Events for partners, on Kafka.

Every event of a registered partner tenant (in PostgreSQL: photocraft_common.accounts)
is copied to its topic ``photocraft.partner.<tenant>.events``, keyed by job
id, with presigned URLs filled in on the results of ``completed``: valid for
``presigned_url_expiry_s`` but never past the job's deadline (its entry in the
expiry index, JobRecord.expires_at), read once per event. Delivery is at least
once: partners drop duplicates by ``event_id``.

Whether a tenant is a partner is read from PostgreSQL at most once per ``PARTNER_TTL_S``
per tenant (a registration shows within that); while PostgreSQL is away, the last answer
stands, so events keep flowing for tenants seen before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy.exc import SQLAlchemyError

from photocraft_common.accounts import DEVICE_PREFIX, Accounts
from photocraft_common.contracts import JobEvent
from photocraft_common.expiry import INDEX_KEY, job_entry
from photocraft_common.kafka import publish
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import PARTNER_EVENTS

PARTNER_TTL_S = 30.0


class PartnerRelay:
    def __init__(self, broker: KafkaBroker, redis: Redis, store: ObjectStore, accounts: Accounts,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._broker, self._clock = broker, clock
        self._redis = redis
        self._store = store
        self._accounts = accounts
        self._known: dict[str, tuple[bool, float]] = {}  # tenant -> (a partner?, until when, monotonic s)

    async def is_partner(self, tenant_id: str) -> bool:
        """Whether ``tenant_id`` is a registered partner (see the module). Raises SQLAlchemy's and OSError's
        errors only when PostgreSQL is away and the tenant was never seen."""
        if tenant_id.startswith(DEVICE_PREFIX):
            return False  # an anonymous device is never a partner: no query
        now, known = self._clock(), self._known.get(tenant_id)
        if known is not None and known[1] > now:
            return known[0]
        try:
            partner = await self._accounts.partner(tenant_id) is not None
        except (SQLAlchemyError, OSError):
            if known is None:
                raise
            return known[0]
        self._known[tenant_id] = (partner, now + PARTNER_TTL_S)
        return partner

    async def relay(self, event: JobEvent) -> bool:
        """Publish ``event`` to its tenant's partner topic if the tenant is a partner; True if it was.
        Raises redis-py's, SQLAlchemy's and aiokafka's errors."""
        if not await self.is_partner(event.tenant_id):
            return False
        if event.HasField("completed"):
            deadline = await self._redis.zscore(INDEX_KEY, job_entry(event.job_id))  # None: unknown, purged
            event = JobEvent.FromString(event.SerializeToString())
            for ref in event.completed.results:
                ref.url = self._store.presigned_get_url(ref, deadline)
        await publish(self._broker, PARTNER_EVENTS.format(tenant=event.tenant_id), event)
        return True
