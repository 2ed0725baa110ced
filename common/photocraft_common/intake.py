"""Taking in a job, whoever sends it: a client over HTTP (gateway) or a partner over Kafka (scheduler).

The checks run in this order and raise ``Problem`` before anything is stored:
the operation and its parameters (422), the tier allows the operation (403),
the platform serves its models (503), an image where one is due (422), the
photo (415, 422), the daily quota (429). Then ``queue_job`` records the job,
emits ``received`` and publishes JobSubmitted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from .accounts import Identity
from .contracts import JobSubmitted, ObjectRef, Received, now
from .events import EventPublisher
from .images import ImageInfo, InvalidImage, probe
from .jobs import JobStatus, JobStore
from .kafka import publish
from .models import ModelDirectory
from .operations import MEGAPIXEL, Operation, UnknownOperation, ValidationError, get_operation, parse_params
from .problems import Problem
from .quotas import Grant, Quotas
from .storage import ObjectStore, input_key
from .tiers import Lane, Tier, TierPolicy, lane_of
from .topics import JOBS_SUBMITTED


@dataclass
class Admitted:
    """A submission that passed the checks that need no photo."""

    operation: Operation
    params: object  # the operation's validated parameters (a pydantic model)
    policy: TierPolicy


def validation_detail(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'params'}: {e['msg']}" for e in exc.errors())


async def admit(policy: TierPolicy, tier: Tier, operation: str, params: str | None,
                models: ModelDirectory) -> Admitted:
    """Check ``operation`` and its ``params`` (a JSON object) for a caller of ``tier``; raises Problem."""
    try:
        parsed = parse_params(operation, params)
    except UnknownOperation as exc:
        raise Problem(422, "unknown-operation", "Unknown operation", str(exc)) from None
    except ValidationError as exc:
        raise Problem(422, "invalid-params", "Invalid parameters", validation_detail(exc)) from None
    except ValueError as exc:
        raise Problem(422, "invalid-params", "Invalid parameters", str(exc)) from None
    if not policy.allows(operation):
        raise Problem(403, "operation-not-allowed", "Operation not in your tier",
                      f"the {tier} tier does not include {operation}; an account with a higher tier does")
    op = get_operation(operation)
    available = await models.available()
    if not available:
        raise Problem(503, "inference-unavailable", "Inference unavailable",
                      "no model is being served right now (the inference servers are starting or down); "
                      "retry shortly", {"Retry-After": "10"})
    if missing := op.missing_models(parsed, available):
        raise Problem(503, "model-not-installed", "Model not installed",
                      f"{operation} needs {', '.join(missing)}, which this platform does not serve now "
                      "(see docs/models.md to install it)")
    return Admitted(op, parsed, policy)


def check_input(admitted: Admitted, has_image: bool, field: str) -> None:
    """An image where the operation takes one and none where it does not; raises Problem 422.
    ``field`` names where the image goes (a form field, a message field)."""
    name = admitted.operation.name
    if admitted.operation.takes_input and not has_image:
        raise Problem(422, "missing-file", "Missing file", f"{name} needs an image in the {field!r} field")
    if not admitted.operation.takes_input and has_image:
        raise Problem(422, "unexpected-file", "Unexpected file", f"{name} takes no {field}")


def lane(admitted: Admitted, info: ImageInfo | None, in_batch: bool = False) -> Lane:
    """The job's lane, from its operation, parameters and photo size (tiers.lane_of)."""
    megapixels = info.width * info.height / MEGAPIXEL if info else 0
    return lane_of(admitted.operation.name, admitted.params.model_dump(), megapixels, in_batch)


async def take_quota(quotas: Quotas, caller: Identity, policy: TierPolicy, edits: int, client_ip: str = "unknown",
                     ip_daily_quota: int | None = None) -> Grant:
    """Count ``edits`` against the caller's daily quota: a tenant's, or an anonymous device's and its IP
    address's (``ip_daily_quota``); raises Problem 429 with Retry-After when one has no room."""
    if caller.tier is Tier.ANONYMOUS:
        limits = {f"device:{caller.device_id}": policy.daily_quota, f"ip:{client_ip}": ip_daily_quota}
    else:
        limits = {f"tenant:{caller.tenant_id}": policy.daily_quota}
    grant = await quotas.take({k: v for k, v in limits.items() if v is not None}, edits)
    if not grant.granted:
        raise Problem(429, "quota-exceeded", "Daily quota used up",
                      f"the {caller.tier} tier allows {policy.daily_quota} edits per 24 h"
                      + (" (and per IP address without an account)" if caller.tier is Tier.ANONYMOUS else "")
                      + f"; the next one is possible in {grant.retry_after_s} s",
                      {"Retry-After": str(grant.retry_after_s)})
    return grant


def check_photo(admitted: Admitted, data: bytes, name: str, max_pixels: int) -> ImageInfo:
    """Probe ``data`` (encoded image bytes) for ``admitted``'s operation; raises Problem 415 or 422."""
    try:
        info = probe(data, max_pixels)
    except InvalidImage as exc:
        raise Problem(415, "unsupported-image", "Not a supported image", f"{name}: {exc}") from None
    limit = admitted.operation.max_input_megapixels(admitted.params)
    if info.width * info.height > limit * MEGAPIXEL:
        raise Problem(422, "image-too-large", "Image too large for these parameters",
                      f"{name}: {info.width}x{info.height} is over {limit} MP, the limit of "
                      f"{admitted.operation.name} with these parameters")
    return info


async def store_photo(store: ObjectStore, tenant: str, job_id: str, data: bytes, info: ImageInfo) -> ObjectRef:
    """Put the input photo in S3 under the tenant/job prefix; its content id is its sha256."""
    ref = await store.put(input_key(tenant, job_id, info.extension), data, info.mime_type, info.width, info.height)
    ref.content_id, ref.role = hashlib.sha256(data).hexdigest(), "image"
    return ref


async def queue_job(jobs: JobStore, events: EventPublisher, broker: KafkaBroker, *, job_id: str, tenant_id: str,
                    tier: Tier, admitted: Admitted, ref: ObjectRef | None, lane: Lane, token: str,
                    batch_id: str = "") -> None:
    """Record the job, emit ``received`` and publish JobSubmitted; raises KafkaError when it cannot be queued
    (the job is then recorded as failed)."""
    operation, params_json = admitted.operation.name, admitted.params.model_dump_json()
    await jobs.create(job_id, tenant_id, operation, params_json, ref, token, tier.value, lane.value, batch_id)
    try:
        await events.emit(job_id, tenant_id, once="received", received=Received(operation=operation, input=ref))
        await publish(broker, JOBS_SUBMITTED, JobSubmitted(
            job_id=job_id, tenant_id=tenant_id, operation=operation, params_json=params_json, input=ref,
            submitted_at=now(), tier=tier.value, lane=lane.value, batch_id=batch_id))
    except KafkaError as exc:
        await jobs.set_status(job_id, JobStatus.FAILED, error_code="not-published", error_message=str(exc))
        raise
