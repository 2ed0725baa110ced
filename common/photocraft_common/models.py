"""Which Triton models the platform can serve now, and the identity of their weights.

gpu-inference workers write it; the gateway (to refuse jobs whose models are
missing) and the scheduler (to address reusable results) read it.

    photocraft:models:available  hash  model -> Unix time until which it is known to be there
    photocraft:models:weights    hash  model -> digest of its weights (config parameter
                                                "photocraft.weights") of every model loaded now
    photocraft:models:licences   hash  model -> {"until": Unix time, "licence": licences.ModelLicence}: every
                                                model of Triton's repository, served or withheld for its licence

A worker refreshes availability every few seconds from Triton's repository
index; entries it stops refreshing (model removed, Triton down, no worker)
lapse after ``ttl_s``. A model whose licence the worker does not accept
(licences.py) is never in the available set; its licence entry says why.
"""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis

from .licences import ModelLicence

AVAILABLE = "photocraft:models:available"
WEIGHTS = "photocraft:models:weights"
LICENCES = "photocraft:models:licences"


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

    async def publish_licences(self, entries: list[ModelLicence], ttl_s: float) -> None:
        if entries:
            until = time.time() + ttl_s
            await self._redis.hset(LICENCES, mapping={e.model: json.dumps({"until": until, "licence": e.model_dump()})
                                                      for e in entries})

    async def licences(self) -> dict[str, ModelLicence]:
        """The licence of each model a worker reported within its TTL, by name (``withheld`` says why one is not
        served)."""
        now = time.time()
        entries = [json.loads(raw) for raw in (await self._redis.hgetall(LICENCES)).values()]
        return {e["licence"]["model"]: ModelLicence.model_validate(e["licence"]) for e in entries if e["until"] > now}

    async def record_weights(self, model: str, digest: str) -> None:
        await self._redis.hset(WEIGHTS, model, digest)

    async def keep_weights(self, digests: dict[str, str]) -> None:
        """Make ``digests`` (model -> digest of the models loaded now) the recorded ones: a model missing from
        them has its digest dropped, so its results are reused only once a worker has loaded it again."""
        stale = [m for m in await self._redis.hkeys(WEIGHTS) if m.decode() not in digests]
        if stale:
            await self._redis.hdel(WEIGHTS, *stale)
        if digests:
            await self._redis.hset(WEIGHTS, mapping=digests)

    async def weights(self, model: str) -> str | None:
        digest = await self._redis.hget(WEIGHTS, model)
        return digest.decode() if digest else None
