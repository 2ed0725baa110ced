"""Job records in Redis: the status a client reads with ``GET /v1/jobs/{id}``.

The gateway creates a record; the scheduler moves it through its statuses.
A record is a Redis hash ``photocraft:job:<job_id>`` that expires after the
job TTL. Once a job is completed, failed or cancelled its status never changes.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from enum import StrEnum

from google.protobuf import json_format
from pydantic import BaseModel
from redis.asyncio import Redis

from .contracts import ObjectRef


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})

# Sets fields only while the job exists and is not in a terminal status.
# Returns 1 when applied, 0 when the job had already ended, -1 when unknown.
_TRANSITION = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'completed' or status == 'failed' or status == 'cancelled' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


def job_key(job_id: str) -> str:
    return f"photocraft:job:{job_id}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ref_to_json(ref: ObjectRef) -> str:
    return json_format.MessageToJson(ref, indent=None)


def ref_from_json(text: str) -> ObjectRef:
    return json_format.Parse(text, ObjectRef())


class JobRecord(BaseModel):
    job_id: str
    tenant_id: str
    operation: str
    status: JobStatus
    tier: str = "anonymous"
    lane: str = "standard"
    batch_id: str = ""
    params_json: str = "{}"
    input: ObjectRef | None = None
    results: list[ObjectRef] = []
    warnings: list[str] = []
    error_code: str = ""
    error_message: str = ""
    error_stage: str = ""
    created_at: float  # Unix time, seconds
    updated_at: float
    token_sha256: str = ""

    model_config = {"arbitrary_types_allowed": True}

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, hash_token(token))


class JobStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._transition = redis.register_script(_TRANSITION)

    async def create(self, job_id: str, tenant_id: str, operation: str, params_json: str,
                     input_ref: ObjectRef | None, token: str, tier: str, lane: str, batch_id: str = "") -> None:
        stamp = time.time()
        fields = {
            "job_id": job_id, "tenant_id": tenant_id, "operation": operation,
            "status": JobStatus.QUEUED.value, "params_json": params_json,
            "input": ref_to_json(input_ref) if input_ref else "", "tier": tier, "lane": lane,
            "batch_id": batch_id, "created_at": stamp, "updated_at": stamp, "token_sha256": hash_token(token),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(job_key(job_id), mapping=fields)
            pipe.expire(job_key(job_id), self._ttl_s)
            await pipe.execute()

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self._redis.hgetall(job_key(job_id))
        if not raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        results = fields.pop("results", "")
        input_json = fields.pop("input", "")
        warnings = fields.pop("warnings", "")
        return JobRecord(
            **fields,
            input=ref_from_json(input_json) if input_json else None,
            results=[ref_from_json(line) for line in results.splitlines()],
            warnings=warnings.splitlines(),
        )

    async def set_status(self, job_id: str, status: JobStatus, *, results: list[ObjectRef] = (),
                         warnings: list[str] = (), error_code: str = "", error_message: str = "",
                         error_stage: str = "") -> bool:
        """Move a job to ``status``; False when the job had already ended (or is unknown)."""
        fields: dict[str, str | float] = {"status": status.value, "updated_at": time.time()}
        if results:
            fields["results"] = "\n".join(ref_to_json(ref) for ref in results)
        if warnings:
            fields["warnings"] = "\n".join(w.replace("\n", " ") for w in warnings)
        if error_code:
            fields.update(error_code=error_code, error_message=error_message, error_stage=error_stage)
        args = [item for pair in fields.items() for item in pair]
        return await self._transition(keys=[job_key(job_id)], args=args) == 1
