"""Events for partners, on Kafka.

Every event of a registered partner tenant (in PostgreSQL: photocraft_common.accounts)
is copied to its topic ``photocraft.partner.<tenant>.events``, keyed by job
id, with presigned URLs filled in on the results of ``completed``: valid for
``presigned_url_expiry_s`` but never past the job's deadline (its entry in the
expiry index, JobRecord.expires_at), read once per event. Delivery is at least
once: partners drop duplicates by ``event_id``.
"""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from redis.asyncio import Redis

from photocraft_common.accounts import DEVICE_PREFIX, Accounts
from photocraft_common.contracts import JobEvent
from photocraft_common.expiry import INDEX_KEY, job_entry
from photocraft_common.kafka import publish
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import PARTNER_EVENTS


class PartnerRelay:
    def __init__(self, broker: KafkaBroker, redis: Redis, store: ObjectStore, accounts: Accounts) -> None:
        self._broker = broker
        self._redis = redis
        self._store = store
        self._accounts = accounts

    async def relay(self, event: JobEvent) -> bool:
        """Publish ``event`` to its tenant's partner topic if the tenant is a partner; True if it was.
        Raises redis-py's, SQLAlchemy's and aiokafka's errors."""
        if event.tenant_id.startswith(DEVICE_PREFIX) or await self._accounts.partner(event.tenant_id) is None:
            return False  # an anonymous device is never a partner: no query
        if event.HasField("completed"):
            deadline = await self._redis.zscore(INDEX_KEY, job_entry(event.job_id))  # None: unknown, purged
            event = JobEvent.FromString(event.SerializeToString())
            for ref in event.completed.results:
                ref.url = self._store.presigned_get_url(ref, deadline)
        await publish(self._broker, PARTNER_EVENTS.format(tenant=event.tenant_id), event)
        return True
