"""Which models stay loaded in one Triton instance: LRU within a memory budget.

Triton runs with explicit model control and evicts nothing by itself. Every
worker that uses an instance shares that instance's residency state in Redis,
so that no worker unloads a model another one is using:

    photocraft:residency:<instance>:loaded           zset  model -> last use (Unix s)
    photocraft:residency:<instance>:inflight:<model> zset  lease id -> lease expiry (Unix s)
    photocraft:residency:<instance>:lock              the lock every load and unload holds

``use(model)`` takes a lease on the model for the duration of a request. A
model already loaded is a *hit*. Otherwise (a *miss*) the worker takes the
instance's lock, checks again (a model loaded meanwhile by another request,
in this worker or another, is not loaded twice: single flight), unloads the
least recently used models that are neither pinned nor leased until the new
one fits the budget, and loads it. A model larger than the whole budget is
refused (ModelTooLarge); one that does not fit because the others are busy
waits for them, with backoff. ``sweep`` unloads models idle for longer than
the idle TTL and reconciles the state with what Triton really has loaded.

Footprints come from models/registry.toml (``footprints``): on CPU nodes the
measured ``memory_bytes``; on GPU nodes (``device = "gpu"``) the measured
``gpu_memory_bytes`` of the models that run on the GPU, a conservative
default for those not yet measured (logged once at start), and 0 for models
that stay on the node's CPU. ``budget`` picks the budget those count against.
"""

from __future__ import annotations

import asyncio
import logging
import time
import tomllib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from . import metrics
from .settings import ResidencySettings

log = logging.getLogger("photocraft.inference.residency")


def footprints(registry: Path | dict[str, dict], settings: ResidencySettings) -> dict[str, int]:
    """Bytes each model of ``registry`` (models/registry.toml, or its parsed ``models`` table)
    counts against the budget on ``settings.device``. On ``cpu`` the unmeasured ones are left out
    (they count ``default_footprint_bytes``); on ``gpu`` every model is in, and each GPU model
    without a measured ``gpu_memory_bytes`` counts ``unmeasured_gpu_footprint_bytes``, with a warning."""
    if not isinstance(registry, dict):
        with open(registry, "rb") as f:
            registry = tomllib.load(f)["models"]
    if settings.device == "cpu":
        return {name: entry["memory_bytes"] for name, entry in registry.items() if entry.get("memory_bytes")}
    result = {}
    for name, entry in registry.items():
        if not entry.get("gpu", False):
            result[name] = 0  # runs on the node's CPU
        elif entry.get("gpu_memory_bytes"):
            result[name] = entry["gpu_memory_bytes"]
        else:
            result[name] = settings.unmeasured_gpu_footprint_bytes
            log.warning("%s: GPU memory unmeasured (gpu_memory_bytes = 0 in the model registry); budgeting %.0f MiB "
                        "(unmeasured_gpu_footprint_bytes). Measure it: python models/measure.py --gpu --write",
                        name, result[name] / 2**20)
    return result


def budget(settings: ResidencySettings, gpu_budget_bytes: int | None) -> int:
    """The instance's budget in bytes: ``settings.budget_bytes`` when set; else on ``gpu``
    ``gpu_budget_bytes`` (90 % of the GPU memory Triton reports), on ``cpu`` ``cpu_budget_bytes``.
    Raises ValueError on ``gpu`` when neither is known: budgeting GPU footprints against host
    memory would be wrong, silently."""
    if settings.budget_bytes:
        return settings.budget_bytes
    if settings.device == "cpu":
        return settings.cpu_budget_bytes
    if not gpu_budget_bytes:
        raise ValueError("residency device is gpu, but Triton reports no GPU memory on its metrics endpoint "
                         "(nv_gpu_memory_total_bytes) and PHOTOCRAFT_RESIDENCY__BUDGET_BYTES is not set")
    return gpu_budget_bytes


class ModelTooLarge(RuntimeError):
    """The model needs more memory than the instance's whole budget."""


class NoRoom(RuntimeError):
    """Every model that could make room is in use; try again later."""


class Residency:
    """Residency of models in one Triton instance.

    ``load`` and ``unload`` are the instance's repository calls; ``loaded_now``
    lists the models Triton reports as READY (for reconciliation). ``clock``
    returns Unix seconds and ``sleep`` waits seconds: every last use, lease
    expiry, idle cutoff and wait for room goes by them (tests pass a clock
    they move by hand).
    """

    def __init__(self, redis: Redis, instance: str, budget_bytes: int, footprints: dict[str, int],
                 default_footprint: int, pinned: set[str], idle_ttl_s: float,
                 load: Callable[[str], Awaitable[None]], unload: Callable[[str], Awaitable[None]],
                 loaded_now: Callable[[], Awaitable[set[str]]], lease_s: float = 600.0,
                 wait_for_room_s: float = 300.0, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._redis = redis
        self.instance = instance
        self.budget = budget_bytes
        self._footprints = footprints
        self._default_footprint = default_footprint
        self.pinned = pinned
        self.idle_ttl_s = idle_ttl_s
        self._load, self._unload, self._loaded_now = load, unload, loaded_now
        self._lease_s = lease_s
        self._wait_for_room_s = wait_for_room_s
        self._clock, self._sleep = clock, sleep
        prefix = f"photocraft:residency:{instance}"
        self._loaded_key, self._inflight_prefix = f"{prefix}:loaded", f"{prefix}:inflight:"
        self._lock = redis.lock(f"{prefix}:lock", timeout=lease_s, blocking_timeout=lease_s)

    def footprint(self, model: str) -> int:
        return self._footprints.get(model, self._default_footprint)

    async def loaded(self) -> dict[str, float]:
        """Loaded models and when each was last used (Unix s)."""
        return {m.decode(): t for m, t in await self._redis.zrange(self._loaded_key, 0, -1, withscores=True)}

    async def in_flight(self, model: str) -> int:
        return await self._redis.zcount(self._inflight_prefix + model, self._clock(), "+inf")

    async def resident(self, model: str) -> bool:
        return await self._redis.zscore(self._loaded_key, model) is not None

    @asynccontextmanager
    async def use(self, model: str) -> AsyncIterator[None]:
        """Hold ``model`` loaded for the duration of the block; load it first if needed."""
        if self.footprint(model) > self.budget:
            raise ModelTooLarge(f"{model} needs {self.footprint(model) / 2**20:.0f} MiB; the budget of "
                                f"{self.instance} is {self.budget / 2**20:.0f} MiB")
        lease = uuid.uuid4().hex
        inflight = self._inflight_prefix + model
        await self._redis.zadd(inflight, {lease: self._clock() + self._lease_s})
        metrics.IN_FLIGHT.labels(self.instance, model).inc()
        try:
            if await self.resident(model):
                metrics.HITS.labels(self.instance, model).inc()
            else:
                metrics.MISSES.labels(self.instance, model).inc()
                give_up_at = self._clock() + self._wait_for_room_s
                async for attempt in AsyncRetrying(retry=retry_if_exception_type(NoRoom), reraise=True,
                                                   wait=wait_exponential_jitter(multiplier=0.2, max=5),
                                                   stop=lambda _: self._clock() >= give_up_at, sleep=self._sleep):
                    with attempt:
                        await self._load_making_room(model)
            yield
        finally:
            await self._redis.zrem(inflight, lease)
            if await self.resident(model):
                await self._redis.zadd(self._loaded_key, {model: self._clock()})
            metrics.IN_FLIGHT.labels(self.instance, model).dec()

    async def forget(self, model: str) -> None:
        """Triton no longer has ``model`` (it restarted): drop it from the state."""
        await self._redis.zrem(self._loaded_key, model)

    async def _load_making_room(self, model: str) -> None:
        async with self._lock:
            loaded = await self.loaded()
            if model in loaded:
                return  # loaded while this request waited for the lock
            used = sum(self.footprint(m) for m in loaded)
            for victim in sorted(loaded, key=loaded.get):  # least recently used first
                if used + self.footprint(model) <= self.budget:
                    break
                if victim not in self.pinned and not await self.in_flight(victim):
                    await self._evict(victim, "lru")
                    used -= self.footprint(victim)
            if used + self.footprint(model) > self.budget:
                raise NoRoom(f"no room for {model} in {self.instance}: the loaded models are in use")
            started = time.monotonic()
            await self._load(model)
            metrics.LOADS.labels(self.instance, model).inc()
            metrics.LOAD_SECONDS.labels(self.instance, model).observe(time.monotonic() - started)
            await self._redis.zadd(self._loaded_key, {model: self._clock()})
            metrics.RESIDENT_BYTES.labels(self.instance).set(used + self.footprint(model))
            log.info("%s: loaded %s in %.1f s", self.instance, model, time.monotonic() - started)

    async def _evict(self, model: str, reason: str) -> None:
        await self._redis.zrem(self._loaded_key, model)  # first: no new request counts it as loaded
        await self._unload(model)
        metrics.UNLOADS.labels(self.instance, model, reason).inc()
        log.info("%s: unloaded %s (%s)", self.instance, model, reason)

    async def load_pinned(self) -> None:
        for model in sorted(self.pinned):
            async with self.use(model):
                pass

    async def sweep(self) -> None:
        """Unload models idle longer than the TTL; make the state match what Triton has loaded."""
        async with self._lock:
            really = await self._loaded_now()
            loaded = await self.loaded()
            for model in set(loaded) - really:
                await self._redis.zrem(self._loaded_key, model)
            for model in really - set(loaded):  # loaded outside this state (before a restart)
                await self._redis.zadd(self._loaded_key, {model: self._clock()})
            cutoff = self._clock() - self.idle_ttl_s
            for model, last_use in (await self.loaded()).items():
                if last_use < cutoff and model not in self.pinned and not await self.in_flight(model):
                    await self._evict(model, "idle")
            metrics.RESIDENT_BYTES.labels(self.instance).set(sum(self.footprint(m) for m in await self.loaded()))
