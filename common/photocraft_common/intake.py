"""Taking in jobs, whoever sends them: a client over HTTP (gateway) or a partner over Kafka (scheduler).

``Intake.submit`` (one job, one photo or none) and ``Intake.submit_batch`` (a job per photo) check,
in this order, raising ``Problem`` before anything is stored: the operation and its parameters (422),
the tier allows the operation (403), the platform serves its models (503), an image where one is due
(422; a batch: an operation on photos, and no more photos than the tier allows, 422), each photo as it
is read (its reader's own problems, e.g. the gateway's 413; then 415, 422), the daily quota (429, with
Retry-After). Then each photo goes to S3, the job record to Redis, ``received`` and JobSubmitted to
Kafka. A later failure propagates, giving the quota back first when it is a ``give_back_on`` error
and no job of the submission was queued yet.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from .accounts import Identity
from .batches import BatchStore
from .contracts import JobSubmitted, ObjectRef, Received, new_id, now
from .events import EventPublisher
from .images import ImageInfo, InvalidImage, probe
from .jobs import JobStatus, JobStore
from .kafka import publish
from .models import ModelDirectory
from .operations import MEGAPIXEL, Operation, UnknownOperation, ValidationError, get_operation, parse_params
from .problems import Problem
from .quotas import Grant, Quotas
from .settings import PlatformSettings
from .storage import ObjectStore, input_key
from .tiers import Lane, Tier, TierPolicy, lane_of
from .topics import JOBS_SUBMITTED

MAX_BATCH = 50  # photos in one batch; a tier may allow fewer


@dataclass
class Admitted:
    """A submission that passed the checks that need no photo."""

    operation: Operation
    params: object  # the operation's validated parameters (a pydantic model)
    policy: TierPolicy


@dataclass(frozen=True)
class Upload:
    """A photo still to be read. ``name`` labels it in problems; ``read()`` returns its encoded bytes
    (JPEG, PNG, ...) and may raise a Problem of its own (the gateway's 413 for an upload over its limit)."""

    name: str
    read: Callable[[], Awaitable[bytes]]

    @classmethod
    def of(cls, name: str, data: bytes) -> Upload:
        """A photo already in memory (a partner request's)."""
        async def read() -> bytes:
            return data
        return cls(name, read)


@dataclass(frozen=True)
class Queued:
    """A job recorded and published: its id, its own secret (the record keeps only its sha256), its lane."""

    job_id: str
    token: str
    lane: Lane


@dataclass(frozen=True)
class QueuedBatch:
    batch_id: str
    token: str  # the batch's own secret
    jobs: list[Queued]


def device_header(caller: Identity) -> dict[str, str]:
    """``{"X-Device-Token": token}`` when this request gave the caller (an anonymous device) a token, else {}."""
    return {"X-Device-Token": caller.issued_token} if caller.issued_token else {}


class Intake:
    """The intake path; each method raises Problem as the module says.

    ``batches`` is needed by ``submit_batch`` only. ``ip_daily_quota``: edits per IP address per 24 h
    for anonymous devices (None: no such limit). ``give_back_on``: the errors after the quota was taken
    that give it back (the gateway: KafkaError; the scheduler's partner requests: Exception).
    """

    def __init__(self, *, jobs: JobStore, events: EventPublisher, broker: KafkaBroker, quotas: Quotas,
                 store: ObjectStore, models: ModelDirectory, settings: PlatformSettings,
                 batches: BatchStore | None = None, ip_daily_quota: int | None = None,
                 give_back_on: type[Exception] | tuple[type[Exception], ...] = KafkaError) -> None:
        self._jobs, self._events, self._broker, self._batches = jobs, events, broker, batches
        self._quotas, self._store, self._models, self._settings = quotas, store, models, settings
        self._ip_daily_quota, self._give_back_on = ip_daily_quota, give_back_on

    async def submit(self, caller: Identity, operation: str, params: str | None, photo: Upload | None, *,
                     field: str, job_id: str = "", client_ip: str = "unknown") -> Queued:
        """Take in one job of ``caller``: ``operation`` with ``params`` (a JSON object or None) on ``photo``.

        ``field`` names where the photo goes (a form field, a message field); ``job_id`` defaults to a new id.
        Raises Problem, or the storage's and Kafka's errors (KafkaError: the job is recorded as failed).
        """
        admitted = await self.admit(caller, operation, params)
        name = admitted.operation.name
        if admitted.operation.takes_input and photo is None:
            raise Problem(422, "missing-file", "Missing file", f"{name} needs an image in the {field!r} field")
        if not admitted.operation.takes_input and photo is not None:
            raise Problem(422, "unexpected-file", "Unexpected file", f"{name} takes no {field}")
        data = info = None
        if photo is not None:
            data = await photo.read()
            info = self._check_photo(admitted, data, photo.name)
        grant = await self._take_quota(caller, admitted.policy, 1, client_ip)
        job_id = job_id or new_id()
        async with self._giving_back(grant, queued=[]):
            ref = await self._store_photo(caller.tenant_id, job_id, data, info) if data is not None else None
            return await self._queue(caller, admitted, job_id, ref, lane(admitted, info))

    async def submit_batch(self, caller: Identity, operation: str, params: str | None, photos: Sequence[Upload], *,
                           client_ip: str = "unknown") -> QueuedBatch:
        """Take in one job per photo of ``photos``, all with ``operation`` and ``params``, as one batch
        (lane heavy); every photo is checked before any is stored. Raises as ``submit`` does."""
        admitted = await self.admit(caller, operation, params)
        if not admitted.operation.takes_input:
            raise Problem(422, "unexpected-file", "Not for batches", f"{operation} takes no photo")
        limit = min(MAX_BATCH, admitted.policy.max_batch)
        if len(photos) > limit:
            raise Problem(422, "batch-too-large", "Too many photos",
                          f"{len(photos)} photos; a batch of the {caller.tier} tier holds at most {limit}")
        checked = []
        for photo in photos:
            data = await photo.read()
            checked.append((data, self._check_photo(admitted, data, photo.name)))
        grant = await self._take_quota(caller, admitted.policy, len(checked), client_ip)
        batch_id, token = new_id(), secrets.token_urlsafe(32)
        job_ids = [new_id() for _ in checked]
        await self._batches.create(batch_id, caller.tenant_id, operation, job_ids, token)
        queued: list[Queued] = []
        async with self._giving_back(grant, queued):
            for job_id, (data, info) in zip(job_ids, checked, strict=True):
                ref = await self._store_photo(caller.tenant_id, job_id, data, info)
                queued.append(await self._queue(caller, admitted, job_id, ref, Lane.HEAVY, batch_id))
        return QueuedBatch(batch_id, token, queued)

    async def admit(self, caller: Identity, operation: str, params: str | None) -> Admitted:
        """Check ``operation`` and its ``params`` (a JSON object) for ``caller``'s tier; raises Problem."""
        policy = self._settings.tiers[caller.tier]
        try:
            parsed = parse_params(operation, params)
        except UnknownOperation as exc:
            raise Problem(422, "unknown-operation", "Unknown operation", str(exc)) from None
        except ValidationError as exc:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'params'}: {e['msg']}" for e in exc.errors())
            raise Problem(422, "invalid-params", "Invalid parameters", detail) from None
        except ValueError as exc:
            raise Problem(422, "invalid-params", "Invalid parameters", str(exc)) from None
        if not policy.allows(operation):
            raise Problem(403, "operation-not-allowed", "Operation not in your tier",
                          f"the {caller.tier} tier does not include {operation}; an account with a higher tier does")
        op = get_operation(operation)
        available = await self._models.available()
        if not available:
            raise Problem(503, "inference-unavailable", "Inference unavailable",
                          "no model is being served right now (the inference servers are starting or down); "
                          "retry shortly", {"Retry-After": "10"})
        if missing := op.missing_models(parsed, available):
            raise Problem(503, "model-not-installed", "Model not installed",
                          f"{operation} needs {', '.join(missing)}, which this platform does not serve now "
                          "(see docs/models.md to install it)")
        return Admitted(op, parsed, policy)

    def _check_photo(self, admitted: Admitted, data: bytes, name: str) -> ImageInfo:
        try:
            info = probe(data, self._settings.max_pixels)
        except InvalidImage as exc:
            raise Problem(415, "unsupported-image", "Not a supported image", f"{name}: {exc}") from None
        limit = admitted.operation.max_input_megapixels(admitted.params)
        if info.width * info.height > limit * MEGAPIXEL:
            raise Problem(422, "image-too-large", "Image too large for these parameters",
                          f"{name}: {info.width}x{info.height} is over {limit} MP, the limit of "
                          f"{admitted.operation.name} with these parameters")
        return info

    async def _take_quota(self, caller: Identity, policy: TierPolicy, edits: int, client_ip: str) -> Grant:
        """Count ``edits`` against a tenant's daily quota, or an anonymous device's and its IP address's."""
        if caller.tier is Tier.ANONYMOUS:
            limits = {f"device:{caller.device_id}": policy.daily_quota, f"ip:{client_ip}": self._ip_daily_quota}
        else:
            limits = {f"tenant:{caller.tenant_id}": policy.daily_quota}
        grant = await self._quotas.take({k: v for k, v in limits.items() if v is not None}, edits)
        if not grant.granted:  # a device keeps the token it was just given
            raise Problem(429, "quota-exceeded", "Daily quota used up",
                          f"the {caller.tier} tier allows {policy.daily_quota} edits per 24 h"
                          + (" (and per IP address without an account)" if caller.tier is Tier.ANONYMOUS else "")
                          + f"; the next one is possible in {grant.retry_after_s} s",
                          {"Retry-After": str(grant.retry_after_s), **device_header(caller)})
        return grant

    @asynccontextmanager
    async def _giving_back(self, grant: Grant, queued: list[Queued]) -> AsyncIterator[None]:
        try:
            yield
        except self._give_back_on:
            if not queued:
                await self._quotas.give_back(grant)
            raise

    async def _store_photo(self, tenant: str, job_id: str, data: bytes, info: ImageInfo) -> ObjectRef:
        """Put the input photo in S3 under the tenant/job prefix; its content id is its sha256."""
        ref = await self._store.put(input_key(tenant, job_id, info.extension), data, info.mime_type,
                                    info.width, info.height)
        ref.content_id, ref.role = hashlib.sha256(data).hexdigest(), "image"
        return ref

    async def _queue(self, caller: Identity, admitted: Admitted, job_id: str, ref: ObjectRef | None, lane: Lane,
                     batch_id: str = "") -> Queued:
        """Record the job, emit ``received`` and publish JobSubmitted; on KafkaError the job is recorded
        as failed and the error raised."""
        token, tenant_id = secrets.token_urlsafe(32), caller.tenant_id
        operation, params_json = admitted.operation.name, admitted.params.model_dump_json()
        await self._jobs.create(job_id, tenant_id, operation, params_json, ref, token, caller.tier.value,
                                lane.value, batch_id)
        try:
            await self._events.emit(job_id, tenant_id, once="received", received=Received(operation=operation,
                                                                                            input=ref))
            await publish(self._broker, JOBS_SUBMITTED, JobSubmitted(
                job_id=job_id, tenant_id=tenant_id, operation=operation, params_json=params_json, input=ref,
                submitted_at=now(), tier=caller.tier.value, lane=lane.value, batch_id=batch_id))
        except KafkaError as exc:
            await self._jobs.set_status(job_id, JobStatus.FAILED, error_code="not-published", error_message=str(exc))
            raise
        return Queued(job_id, token, lane)


def lane(admitted: Admitted, info: ImageInfo | None, in_batch: bool = False) -> Lane:
    """The job's lane, from its operation, parameters and photo size (tiers.lane_of)."""
    megapixels = info.width * info.height / MEGAPIXEL if info else 0
    return lane_of(admitted.operation.name, admitted.params.model_dump(), megapixels, in_batch)
