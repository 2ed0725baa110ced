"""Batches: up to 50 photos, one job each, followed together.

The gateway creates a batch record ``photocraft:batch:<id>`` (a Redis hash:
tenant, operation, total, job ids, token hash); the scheduler counts the
batch's jobs as they end (``:ended``, a set, so that a job counts once) and
publishes BatchProgress events with the batch id as their job id.
"""

from __future__ import annotations

import hmac
import time

from pydantic import BaseModel
from redis.asyncio import Redis

from .jobs import hash_token


def batch_key(batch_id: str) -> str:
    return f"photocraft:batch:{batch_id}"


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

    async def create(self, batch_id: str, tenant_id: str, operation: str, job_ids: list[str], token: str) -> None:
        key = batch_key(batch_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"batch_id": batch_id, "tenant_id": tenant_id, "operation": operation,
                                    "total": len(job_ids), "job_ids": " ".join(job_ids), "done": 0, "failed": 0,
                                    "created_at": time.time(), "token_sha256": hash_token(token)})
            pipe.expire(key, self._ttl_s)
            await pipe.execute()

    async def get(self, batch_id: str) -> BatchRecord | None:
        raw = await self._redis.hgetall(batch_key(batch_id))
        if not raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        return BatchRecord(**{**fields, "job_ids": fields["job_ids"].split()})

    async def job_ended(self, batch_id: str, job_id: str, succeeded: bool) -> BatchRecord | None:
        """Count a job of the batch as ended, once; returns the updated record, or None if counted before."""
        key = batch_key(batch_id)
        if not await self._redis.sadd(f"{key}:ended", job_id):
            return None
        await self._redis.expire(f"{key}:ended", self._ttl_s)
        await self._redis.hincrby(key, "done" if succeeded else "failed", 1)
        return await self.get(batch_id)
