"""Job records in Redis: the status a client reads with ``GET /v1/jobs/{id}``.

The gateway creates a record; the scheduler moves it through its statuses.
A record is a Redis hash ``photocraft:job:<job_id>`` that expires after the
job TTL. Once a job is completed, failed or cancelled its status never changes.
Created with it: the job's entry in the expiry index (and its batch's), due at
``expires_at`` (created_at + TTL), when the storage-janitor deletes the record
and the keys next to it (``job_keys``); and a tombstone that outlives it by
``TOMBSTONE_S`` (tenant and token hash only), so that a reader whose credential
would have opened the job learns that it was purged (410) and nobody else does.
The record keeps the job's edit of its caller's daily quota (``quota_keys``,
``quota_edit``: photocraft_common.quotas.Charge) and, once the edit was given
back, why (``edit_returned``); the record and the tombstone keep the W3C
``traceparent`` of the job's intake, the context of its trace (photocraft_common.telemetry).
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
from .expiry import ExpiryIndex, batch_entry, job_entry
from .quotas import Charge


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


# The keys services keep next to a job record (and next to a batch's, whose events are logged under its
# id): the scheduler's stage states and outputs, the notifier's event log, its event ids and counter.
JOB_KEY_SUFFIXES = ("", ":stages", ":outputs", ":events", ":event-ids", ":event-seq")
TOMBSTONE_S = 7 * 86400  # how long a tombstone outlives its record


def job_key(job_id: str) -> str:
    return f"photocraft:job:{job_id}"


def job_keys(job_id: str) -> list[str]:
    """Every Redis key of a job (or of a batch's event log), the record first."""
    return [job_key(job_id) + suffix for suffix in JOB_KEY_SUFFIXES]


def tombstone_key(kind: str, record_id: str) -> str:
    """``kind``: "job" or "batch"."""
    return f"photocraft:tombstone:{kind}:{record_id}"


class Tombstone(BaseModel):
    """What is left of a purged job or batch: whose it was; no photo, prompt or parameters."""

    tenant_id: str
    token_sha256: str
    traceparent: str = ""  # the job's trace, for the storage-janitor's purge span

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, hash_token(token))


def bury(pipe, kind: str, record_id: str, tenant_id: str, token: str, ttl_s: int) -> None:
    """Queue on ``pipe`` the tombstone of a record created now that lives ``ttl_s``."""
    pipe.hset(tombstone_key(kind, record_id), mapping={"tenant_id": tenant_id, "token_sha256": hash_token(token)})
    pipe.expire(tombstone_key(kind, record_id), ttl_s + TOMBSTONE_S)


def unearth(raw: dict[bytes, bytes]) -> Tombstone | None:
    """The tombstone in a HGETALL answer; None when empty."""
    return Tombstone(**{k.decode(): v.decode() for k, v in raw.items()}) if raw else None


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
    expires_at: float = 0.0  # Unix time, seconds: when everything of the job is purged (0: not recorded)
    token_sha256: str = ""
    quota_keys: str = ""  # the quota counters charged, space-separated
    quota_edit: str = ""  # the edit's member on each of them
    edit_returned: str = ""  # why the edit went back to the quota ("failed", ...); "" while it counts
    traceparent: str = ""  # W3C: the job's trace, which its stages continue (photocraft_common.telemetry)

    model_config = {"arbitrary_types_allowed": True}

    @property
    def charge(self) -> Charge:
        """The job's edit of its caller's daily quota; empty when none was charged."""
        return Charge(tuple(self.quota_keys.split()), self.quota_edit)

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, hash_token(token))


class JobStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._transition = redis.register_script(_TRANSITION)
        self._expiry = ExpiryIndex(redis, ttl_s)

    async def lookup(self, job_id: str) -> JobRecord | Tombstone | None:
        """The job's record; once purged its Tombstone; None for a job that never existed (or whose
        tombstone expired too). The same Redis calls whichever it is."""
        async with self._redis.pipeline(transaction=False) as pipe:
            raw, tomb = await pipe.hgetall(job_key(job_id)).hgetall(tombstone_key("job", job_id)).execute()
        return self._record(raw) if raw else unearth(tomb)

    async def create(self, job_id: str, tenant_id: str, operation: str, params_json: str,
                     input_ref: ObjectRef | None, token: str, tier: str, lane: str, batch_id: str = "",
                     charge: Charge | None = None, traceparent: str = "") -> None:
        """Record a new job, queued; ``charge`` is its edit of the caller's daily quota (None: none),
        ``traceparent`` the W3C context of its trace ("": none)."""
        stamp, charge = time.time(), charge or Charge()
        expires_at = stamp + self._ttl_s
        fields = {
            "job_id": job_id, "tenant_id": tenant_id, "operation": operation,
            "status": JobStatus.QUEUED.value, "params_json": params_json,
            "input": ref_to_json(input_ref) if input_ref else "", "tier": tier, "lane": lane,
            "batch_id": batch_id, "created_at": stamp, "updated_at": stamp, "token_sha256": hash_token(token),
            "quota_keys": " ".join(charge.keys), "quota_edit": charge.member, "expires_at": expires_at,
            "traceparent": traceparent,
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(job_key(job_id), mapping=fields)
            pipe.expire(job_key(job_id), self._ttl_s)
            bury(pipe, "job", job_id, tenant_id, token, self._ttl_s)
            if traceparent:
                pipe.hset(tombstone_key("job", job_id), "traceparent", traceparent)
            self._expiry.schedule(pipe, [job_entry(job_id)] + ([batch_entry(batch_id)] if batch_id else []),
                                  expires_at)
            await pipe.execute()

    async def get(self, job_id: str) -> JobRecord | None:
        raw = await self._redis.hgetall(job_key(job_id))
        return self._record(raw) if raw else None

    @staticmethod
    def _record(raw: dict[bytes, bytes]) -> JobRecord:
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
