"""Batches: up to 50 photos, one job each, followed together.

The gateway creates a batch record ``photocraft:batch:<id>`` (a Redis hash:
tenant, operation, total, job ids, token hash); the scheduler counts the
batch's jobs as they end (``:ended``, a set, so that a job counts once) and
publishes BatchProgress events with the batch id as their job id. Like a job
(photocraft_common.jobs), a batch has an entry in the expiry index and a
tombstone from its creation. ``:ended`` expires with the record, and a job that
ends after the batch was purged writes nothing (a late count never recreates
its keys).
"""

from __future__ import annotations

import hmac
import time

from pydantic import BaseModel
from redis.asyncio import Redis

from .expiry import ExpiryIndex, batch_entry
from .jobs import Tombstone, bury, hash_token, job_keys, tombstone_key, unearth

# KEYS: the batch record, its ended jobs. ARGV: the job id, the field to count ("done" or "failed"), the
# lifetime in ms (for a record without expiry). Counts the job once while the record exists, the set expiring
# with the record; returns the record (HGETALL), or an empty list when counted before or the record is gone.
_JOB_ENDED = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return {} end
if ttl == -1 then
  ttl = ARGV[3]
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return {} end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('HINCRBY', KEYS[1], ARGV[2], 1)
return redis.call('HGETALL', KEYS[1])
"""


def batch_key(batch_id: str) -> str:
    return f"photocraft:batch:{batch_id}"


def batch_keys(batch_id: str) -> list[str]:
    """Every Redis key of a batch: its record, its ended jobs and its event log (kept under its id)."""
    return [batch_key(batch_id), f"{batch_key(batch_id)}:ended", *job_keys(batch_id)[1:]]


class BatchRecord(BaseModel):
    batch_id: str
    tenant_id: str
    operation: str
    total: int
    job_ids: list[str]
    done: int = 0
    failed: int = 0
    created_at: float
    token_sha256: str

    def token_matches(self, token: str) -> bool:
        return hmac.compare_digest(self.token_sha256, hash_token(token))


class BatchStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._job_ended = redis.register_script(_JOB_ENDED)

    async def create(self, batch_id: str, tenant_id: str, operation: str, job_ids: list[str], token: str) -> None:
        key, stamp = batch_key(batch_id), time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"batch_id": batch_id, "tenant_id": tenant_id, "operation": operation,
                                    "total": len(job_ids), "job_ids": " ".join(job_ids), "done": 0, "failed": 0,
                                    "created_at": stamp, "token_sha256": hash_token(token)})
            pipe.expire(key, self._ttl_s)
            bury(pipe, "batch", batch_id, tenant_id, token, self._ttl_s)
            ExpiryIndex(self._redis, self._ttl_s).schedule(pipe, [batch_entry(batch_id)], stamp + self._ttl_s)
            await pipe.execute()

    async def lookup(self, batch_id: str) -> BatchRecord | Tombstone | None:
        """The batch's record; once purged its Tombstone; None for one that never existed."""
        async with self._redis.pipeline(transaction=False) as pipe:
            raw, tomb = await pipe.hgetall(batch_key(batch_id)).hgetall(tombstone_key("batch", batch_id)).execute()
        return self._record(raw) if raw else unearth(tomb)

    async def get(self, batch_id: str) -> BatchRecord | None:
        raw = await self._redis.hgetall(batch_key(batch_id))
        return self._record(raw) if raw else None

    @staticmethod
    def _record(raw: dict[bytes, bytes] | list[bytes]) -> BatchRecord:
        pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
        fields = {k.decode(): v.decode() for k, v in pairs}
        return BatchRecord(**{**fields, "job_ids": fields["job_ids"].split()})

    async def job_ended(self, batch_id: str, job_id: str, succeeded: bool) -> BatchRecord | None:
        """Count a job of the batch as ended, once; returns the updated record, or None if counted before or
        the batch is gone (expired or purged: nothing is written)."""
        key = batch_key(batch_id)
        raw = await self._job_ended(keys=[key, f"{key}:ended"],
                                    args=[job_id, "done" if succeeded else "failed", self._ttl_s * 1000])
        return self._record(raw) if raw else None
