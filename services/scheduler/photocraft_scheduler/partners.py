"""Jobs from partners over Kafka.

A partner writes PartnerRequest messages to ``photocraft.partner.<tenant>.requests``;
in production the Kafka ACLs let only that tenant's principal write there
(docs/partners.md). Identity is checked here: the topic's tenant must be a
registered partner and the message must name it. Then the request passes the
same checks as an HTTP upload (photocraft_common.intake) and the tenant's daily
quota, and becomes a job like any other, whose id is the request id. A refused
request becomes a ``failed`` event with the problem's code, on the partner's
events topic like every event of its jobs. A request id seen before is ignored,
so a partner may resend after a timeout.
"""

from __future__ import annotations

import logging
import uuid

from redis.asyncio import Redis

from photocraft_common.accounts import Accounts
from photocraft_common.contracts import Failed, PartnerRequest, new_id
from photocraft_common.events import EventPublisher
from photocraft_common.intake import Intake, Upload
from photocraft_common.jobs import JobStore
from photocraft_common.kafka import Unprocessable
from photocraft_common.models import ModelDirectory
from photocraft_common.problems import Problem
from photocraft_common.quotas import Quotas
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import ObjectStore

log = logging.getLogger("photocraft.scheduler.partners")


class UnknownPartner(Unprocessable):
    """A request on the topic of a tenant that is not a registered partner (it goes to the dead-letter topic)."""


class PartnerIntake:
    def __init__(self, redis: Redis, store: ObjectStore, jobs: JobStore, events: EventPublisher,
                 broker, settings: PlatformSettings, accounts: Accounts) -> None:
        self._redis = redis
        self._jobs = jobs
        self._events = events
        self._settings = settings
        self._accounts = accounts  # partner registrations, in PostgreSQL
        # A refused request takes nothing: any failure after the quota was taken gives it back.
        self._intake = Intake(jobs=jobs, events=events, broker=broker, quotas=Quotas(redis), store=store,
                              models=ModelDirectory(redis), settings=settings, give_back_on=Exception)

    async def on_request(self, topic_tenant: str, request: PartnerRequest) -> None:
        """Take in ``request``, read from the topic of ``topic_tenant``; raises UnknownPartner."""
        partner = await self._accounts.partner(topic_tenant)
        if partner is None:
            raise UnknownPartner(f"{topic_tenant} is not a registered partner")
        try:
            job_id = uuid.UUID(request.request_id).hex
        except ValueError:
            job_id = ""
        seen = f"photocraft:partner:{topic_tenant}:request:{job_id}"
        if job_id and await self._redis.exists(seen):
            return log.info("request %s of %s seen before; ignored", job_id, topic_tenant)
        try:
            if not job_id:
                raise Problem(422, "invalid-request-id", "Invalid request id",
                              f"request_id {request.request_id!r} is not a UUID")
            if request.tenant_id != topic_tenant:
                raise Problem(403, "tenant-mismatch", "Wrong tenant",
                              f"a request on {topic_tenant}'s topic names tenant {request.tenant_id!r}")
            await self._take(job_id, partner, request)
        except Problem as problem:
            await self._events.emit(job_id or new_id(), topic_tenant, once="failed",
                                    failed=Failed(code=problem.slug, message=problem.detail))
        await self._redis.set(seen, 1, ex=self._settings.job_ttl_s)

    async def _take(self, job_id: str, partner, request: PartnerRequest) -> None:
        if await self._jobs.get(job_id) is not None:
            raise Problem(409, "duplicate-request-id", "Request id in use", f"job {job_id} exists already")
        image = Upload.of("image", request.image) if request.image else None
        await self._intake.submit(partner, request.operation, request.params_json or None, image, field="image",
                                  job_id=job_id)
