"""Which Triton models the platform can serve now, and the identity of their weights.

gpu-inference workers write it; the gateway (to refuse jobs whose models are
missing) and the scheduler (to address reusable results) read it.

    photocraft:models:available  hash  model -> Unix time until which it is known to be there
    photocraft:models:weights    hash  model -> digest of its weights (config parameter
                                                "photocraft.weights"), recorded when a worker loads it

A worker refreshes availability every few seconds from Triton's repository
index; entries it stops refreshing (model removed, Triton down, no worker)
lapse after ``ttl_s``.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

AVAILABLE = "photocraft:models:available"
WEIGHTS = "photocraft:models:weights"


class ModelDirectory:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def publish_available(self, models: list[str], ttl_s: float) -> None:
        if models:
            until = time.time() + ttl_s
            await self._redis.hset(AVAILABLE, mapping={m: until for m in models})

    async def available(self) -> set[str]:
        now = time.time()
        return {m.decode() for m, until in (await self._redis.hgetall(AVAILABLE)).items()
                if float(until) > now}

    async def record_weights(self, model: str, digest: str) -> None:
        await self._redis.hset(WEIGHTS, model, digest)

    async def forget_weights_except(self, present: set[str]) -> None:
        """Drop the digests of models no longer in the repository: if one comes back,
        its weights may differ, and results are reused only once a worker has loaded it."""
        stale = [m for m in await self._redis.hkeys(WEIGHTS) if m.decode() not in present]
        if stale:
            await self._redis.hdel(WEIGHTS, *stale)

    async def weights(self, model: str) -> str | None:
        digest = await self._redis.hget(WEIGHTS, model)
        return digest.decode() if digest else None
