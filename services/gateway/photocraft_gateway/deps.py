"""What the gateway's routes depend on: the platform's clients, who is asking, who may read a record.

app.py's lifespan builds a ``Platform`` and keeps it in ``app.state.platform``; routes take it as
``PlatformDep``, the submitter as ``IdentityDep`` and a reader's credentials as ``BearerDep``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, TypeVar

from aiokafka.errors import KafkaError
from fastapi import Depends, Request, UploadFile
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from photocraft_common.access import Access, Owned, access
from photocraft_common.accounts import Accounts, Identity
from photocraft_common.batches import BatchStore
from photocraft_common.contracts import JobCancelled
from photocraft_common.events import EventPublisher
from photocraft_common.guards import Prober
from photocraft_common.health import Check
from photocraft_common.intake import Intake
from photocraft_common.jobs import JobRecord, JobStatus, JobStore, Tombstone
from photocraft_common.kafka import publish
from photocraft_common.metrics import JOBS_FINISHED_TOTAL
from photocraft_common.models import ModelDirectory
from photocraft_common.quotas import Quotas
from photocraft_common.settings import DatabaseMissing
from photocraft_common.storage import ObjectStore
from photocraft_common.topics import JOBS_CANCELLED
from photocraft_common.usage.ledger import Ledger

from .problems import Problem
from .ratelimit import RateLimits
from .settings import GatewaySettings

R = TypeVar("R", bound=Owned)  # a job or batch record


@dataclass
class Platform:
    """The clients every request shares, and ``readiness``: the checks ``/readyz`` runs (health.checks);
    ``engine``: PostgreSQL's (photocraft_common.database.make_engine), None where a test has no database."""

    settings: GatewaySettings
    broker: KafkaBroker
    redis: Redis
    jobs: JobStore
    batches: BatchStore
    store: ObjectStore
    events: EventPublisher
    models: ModelDirectory
    accounts: Accounts
    quotas: Quotas
    intake: Intake
    readiness: Mapping[str, Check]
    engine: AsyncEngine | None = None

    @classmethod
    def build(cls, settings: GatewaySettings, broker: KafkaBroker, redis: Redis, store: ObjectStore,
              readiness: Mapping[str, Check], engine: AsyncEngine | None = None) -> Platform:
        """The stores and the intake path on top of a (connected) ``broker``, ``redis`` and ``store``."""
        jobs, batches = JobStore(redis, settings.job_ttl_s), BatchStore(redis, settings.job_ttl_s)
        events, models, quotas = EventPublisher(broker), ModelDirectory(redis), Quotas(redis)
        intake = Intake(jobs=jobs, events=events, broker=broker, quotas=quotas, store=store, models=models,
                        settings=settings, batches=batches, ip_daily_quota=settings.anonymous_ip_daily_quota,
                        give_back_on=Exception,  # only accepted work is charged
                        prober=Prober(settings.max_pixels, settings.max_batch_pixels, settings.probe_workers,
                                      settings.probe_waiting))
        return cls(settings, broker, redis, jobs, batches, store, events, models,
                   Accounts(engine, settings.required_keyring()), quotas, intake, readiness, engine)

    @cached_property
    def rate_limits(self) -> RateLimits:
        """Requests per client address or API key (ratelimit.py), counted in this platform's Redis."""
        return RateLimits(self.redis, self.accounts, self.settings.rate_limit_per_ip, self.settings.rate_limit_per_key)

    @cached_property
    def ledger(self) -> Ledger:
        """The usage ledger on ``engine``, charging by the settings' prices; DatabaseMissing without an engine."""
        if self.engine is None:
            raise DatabaseMissing("the usage ledger needs the database (PostgreSQL)")
        return Ledger(self.engine, self.settings.prices)


def platform(request: Request) -> Platform:
    return request.app.state.platform


PlatformDep = Annotated[Platform, Depends(platform)]
bearer = HTTPBearer(auto_error=False)
BearerDep = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def identity(p: PlatformDep, request: Request, credentials: BearerDep) -> Identity:
    """The caller of a submission: the tenant of its API key, or an anonymous device
    (a new one, with a token to hand back, when it sent no valid device token)."""
    if credentials is not None:
        found = await p.accounts.by_key(credentials.credentials)
        if found is None:
            raise Problem(401, "invalid-api-key", "Invalid API key", "the API key is unknown or revoked",
                          {"WWW-Authenticate": "Bearer"})
        return found
    token = request.headers.get("x-device-token")
    return (token and p.accounts.by_device_token(token)) or p.accounts.new_device()


IdentityDep = Annotated[Identity, Depends(identity)]


async def authorized(p: Platform, request: Request, credentials: HTTPAuthorizationCredentials | None,
                     record: R | Tombstone | None, kind: str, record_id: str) -> R:
    """``record`` (the job or batch ``record_id``; ``kind``: "job" or "batch") for a reader allowed to see it
    under photocraft_common.access: its own token, or an API key or device token of its tenant.

    Raises Problem 401 without a credential (whether or not the record exists), 404 when there is no such
    record or the credential does not open it: the same answer, so that no refusal confirms that it exists;
    410 when ``record`` is the Tombstone of a purged one and the credential would have opened it.
    """
    verdict = await access(record, p.accounts, credentials.credentials if credentials is not None else "",
                           request.headers.get("x-device-token", ""))
    if verdict is Access.MISSING:
        raise Problem(401, "unauthorized", "Missing token", "send the token as 'Authorization: Bearer <token>', "
                      "or your API key, or your device token", {"WWW-Authenticate": "Bearer"})
    if verdict is not Access.GRANTED:
        raise Problem(404, f"{kind}-not-found", f"{kind.capitalize()} not found", f"no {kind} {record_id}")
    if isinstance(record, Tombstone):
        raise Problem(410, f"{kind}-expired", f"{kind.capitalize()} expired",
                      f"{kind} {record_id} reached the end of its lifetime and was purged, with its photos")
    return record


def client_ip(request: Request) -> str:
    """The client's address: the peer's, or when the peer is a trusted proxy (PHOTOCRAFT_TRUSTED_PROXIES) the
    rightmost address of X-Forwarded-For that is not one (uvicorn's ProxyHeadersMiddleware, see main.py)."""
    return request.client.host if request.client else "unknown"


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes; raises Problem 413 when it holds more than ``limit``."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise Problem(413, "upload-too-large", "Upload too large",
                      f"{upload.filename or 'the file'} is larger than {limit} bytes")
    return data


@contextmanager
def queueing() -> Iterator[None]:
    """A KafkaError while queueing jobs becomes Problem 503 queue-unavailable, with Retry-After."""
    try:
        yield
    except KafkaError:
        raise Problem(503, "queue-unavailable", "Queue unavailable", "the job could not be queued; try again",
                      {"Retry-After": "5"}) from None


async def cancel(p: Platform, record: JobRecord) -> bool:
    """Cancel ``record``'s job unless it has ended; True if it was cancelled now."""
    if not await p.jobs.set_status(record.job_id, JobStatus.CANCELLED, error_code="cancelled",
                                   error_message="cancelled by the client"):
        return False
    JOBS_FINISHED_TOTAL.labels(record.operation, "cancelled").inc()
    await publish(p.broker, JOBS_CANCELLED, JobCancelled(job_id=record.job_id, tenant_id=record.tenant_id,
                                                         reason="cancelled by the client"))
    return True
