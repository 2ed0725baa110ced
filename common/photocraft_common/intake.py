"""Taking in jobs, whoever sends them: a client over HTTP (gateway) or a partner over Kafka (scheduler).

``Intake.submit`` (one job, one photo or none) and ``Intake.submit_batch`` (a job per photo) check,
in this order, raising ``Problem`` before anything is stored: the operation and its parameters (422),
the tier allows the operation (403), the platform serves its models (503), an image where one is due
(422; a batch: an operation on photos, and no more photos than the tier allows, 422), each photo as it
is read (its reader's own problems, e.g. the gateway's 413), then all from their headers (415, 422; 413
over the batch's pixel budget) and decoded off the event loop (guards.Prober; 415), the daily quota (429, with
Retry-After). Then each photo goes to S3, the job record to Redis (with its edit of the quota, which
whoever ends the job may give back: photocraft_common.quotas), ``received`` and JobSubmitted to Kafka
(photocraft_common.handover, which ends here the jobs Kafka did not take). A failure before every job of
the submission is recorded propagates, giving the quota back first when it is a ``give_back_on`` error.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from . import logs
from .accounts import Identity
from .batches import BatchStore
from .contracts import ObjectRef, new_id
from .events import EventPublisher
from .guards import Prober, check_form
from .handover import Handover, NewJob
from .images import ImageInfo
from .jobs import JobStore
from .metrics import JOBS_SUBMITTED_TOTAL
from .models import ModelDirectory
from .operations import MEGAPIXEL, Operation, UnknownOperation, ValidationError, get_operation, parse_params
from .problems import Problem
from .quotas import Charge, Grant, Quotas
from .settings import PlatformSettings
from .storage import ObjectStore, input_key
from .tiers import Lane, Tier, TierPolicy, lane_of

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
    that give it back (the gateway's and the scheduler's partner requests: Exception). ``prober`` checks the
    photos (default: a guards.Prober of ``settings.max_pixels`` and the default budget and pool).
    """

    def __init__(self, *, jobs: JobStore, events: EventPublisher, broker: KafkaBroker, quotas: Quotas,
                 store: ObjectStore, models: ModelDirectory, settings: PlatformSettings,
                 batches: BatchStore | None = None, ip_daily_quota: int | None = None,
                 give_back_on: type[Exception] | tuple[type[Exception], ...] = KafkaError,
                 prober: Prober | None = None) -> None:
        self._jobs, self._events, self._broker, self._batches = jobs, events, broker, batches
        self._quotas, self._store, self._models, self._settings = quotas, store, models, settings
        self._ip_daily_quota, self._give_back_on = ip_daily_quota, give_back_on
        self._prober = prober or Prober(settings.max_pixels)
        self._handover = Handover(jobs, events, broker, quotas, batches)

    async def submit(self, caller: Identity, operation: str, params: str | None, photo: Upload | None, *,
                     field: str, job_id: str = "", client_ip: str = "unknown") -> Queued:
        """Take in one job of ``caller``: ``operation`` with ``params`` (a JSON object or None) on ``photo``.

        ``field`` names where the photo goes (a form field, a message field); ``job_id`` defaults to a new id.
        Raises Problem, or the storage's and Kafka's errors (KafkaError: the job is recorded as failed, its
        edit given back).
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
            [info] = await self._check_photos(admitted, [(photo.name, data)])
        grant = await self._take_quota(caller, admitted.policy, 1, client_ip)
        job_id = job_id or new_id()
        logs.mark(job_id, caller.tenant_id)
        async with self._giving_back(grant):
            ref = await self._store_photo(caller.tenant_id, job_id, data, info) if data is not None else None
            job = self._new_job(caller, admitted, job_id, ref, lane(admitted, info), grant.charges()[0])
            token = await self._handover.record(job)
        await self._handover.one(job)
        JOBS_SUBMITTED_TOTAL.labels(name, caller.tier.value).inc()
        return Queued(job_id, token, Lane(job.lane))

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
        read = [(photo.name, await photo.read()) for photo in photos]
        checked = list(zip([data for _, data in read], await self._check_photos(admitted, read), strict=True))
        grant = await self._take_quota(caller, admitted.policy, len(checked), client_ip)
        batch_id, token = new_id(), secrets.token_urlsafe(32)
        jobs: list[NewJob] = []
        queued: list[Queued] = []
        async with self._giving_back(grant):  # every job recorded before the batch, the batch before publishing
            for (data, info), charge in zip(checked, grant.charges(), strict=True):
                ref = await self._store_photo(caller.tenant_id, job_id := new_id(), data, info)
                jobs.append(self._new_job(caller, admitted, job_id, ref, Lane.HEAVY, charge, batch_id))
                queued.append(Queued(job_id, await self._handover.record(jobs[-1]), Lane.HEAVY))
            await self._batches.create(batch_id, caller.tenant_id, operation, [j.job_id for j in jobs], token)
        await self._handover.batch(batch_id, jobs)
        JOBS_SUBMITTED_TOTAL.labels(operation, caller.tier.value).inc(len(jobs))
        return QueuedBatch(batch_id, token, queued)

    async def admit(self, caller: Identity, operation: str, params: str | None) -> Admitted:
        """Check ``operation`` and its ``params`` (a JSON object) for ``caller``'s tier; raises Problem."""
        policy = self._settings.tiers[caller.tier]
        check_form(operation, params)
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
            licences = await self._models.licences()  # a model withheld for its licence says so
            why = "; ".join(f"{m} is withheld: {licences[m].withheld}" for m in missing
                            if m in licences and licences[m].withheld)
            raise Problem(503, "model-not-installed", "Model not installed",
                          f"{operation} needs {', '.join(missing)}, which this platform does not serve now "
                          f"({why or 'see docs/models.md to install it'})")
        return Admitted(op, parsed, policy)

    async def _check_photos(self, admitted: Admitted, photos: list[tuple[str, bytes]]) -> list[ImageInfo]:
        limit = admitted.operation.max_input_megapixels(admitted.params)
        return await self._prober.check(photos, admitted.operation.name, limit)

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
    async def _giving_back(self, grant: Grant) -> AsyncIterator[None]:
        """Give ``grant`` back on a ``give_back_on`` error while the submission's jobs are being recorded."""
        try:
            yield
        except self._give_back_on:
            await self._quotas.give_back(grant)
            raise

    async def _store_photo(self, tenant: str, job_id: str, data: bytes, info: ImageInfo) -> ObjectRef:
        """Put the input photo in S3 under the tenant/job prefix; its content id is its sha256."""
        key = input_key(self._settings.required_keyring(), tenant, job_id, info.extension)  # opaque prefix
        ref = await self._store.put(key, data, info.mime_type, info.width, info.height)
        ref.content_id, ref.role = hashlib.sha256(data).hexdigest(), "image"
        return ref

    @staticmethod
    def _new_job(caller: Identity, admitted: Admitted, job_id: str, ref: ObjectRef | None, lane: Lane,
                 charge: Charge, batch_id: str = "") -> NewJob:
        return NewJob(job_id, caller.tenant_id, caller.tier.value, admitted.operation.name,
                      admitted.params.model_dump_json(), ref, lane.value, charge, batch_id)


def lane(admitted: Admitted, info: ImageInfo | None, in_batch: bool = False) -> Lane:
    """The job's lane, from its operation, parameters and photo size (tiers.lane_of)."""
    megapixels = info.width * info.height / MEGAPIXEL if info else 0
    return lane_of(admitted.operation.name, admitted.params.model_dump(), megapixels, in_batch)
