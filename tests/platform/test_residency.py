"""Residency on a real Triton: a budget that fits two of three models.

The tests start their own Triton instance (infra/bin/triton on ports
8200-8202, the platform's model repository) so that loading and unloading
never disturbs the platform's workers; state lives in the real Redis under
a test-only instance name.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio
import tritonclient.grpc.aio as grpcclient

from photocraft_inference.residency import ModelTooLarge, NoRoom, Residency

from .helpers import own_triton

A, B, C = "tone", "inpaint", "analyze"  # light models; footprints below are made up
GiB = 2**30


@pytest.fixture(scope="module")
def triton():
    with own_triton(8200) as address:
        yield address


class Clock:
    """Unix time, plus whatever the test moved it on by; the residency's sleeps move it on at once."""

    def __init__(self) -> None:
        self.ahead_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead_s

    async def sleep(self, seconds: float) -> None:
        self.ahead_s += seconds
        await asyncio.sleep(0)


class Instance:
    """A Residency over the test's Triton, counting the loads it makes, on a clock of the test's."""

    def __init__(self, url: str, name: str, pinned=(), idle_ttl_s=600.0, wait_for_room_s=30.0) -> None:
        self.client = grpcclient.InferenceServerClient(url)
        self.loads: list[str] = []
        self.clock = Clock()
        self.residency = Residency(
            redis.asyncio.Redis(), name, budget_bytes=int(2.5 * GiB), footprints={A: GiB, B: GiB, C: GiB},
            default_footprint=3 * GiB, pinned=set(pinned), idle_ttl_s=idle_ttl_s, load=self._load,
            unload=self.client.unload_model, loaded_now=self._ready, wait_for_room_s=wait_for_room_s,
            clock=self.clock, sleep=self.clock.sleep)

    async def _load(self, model: str) -> None:
        self.loads.append(model)
        await self.client.load_model(model)

    async def _ready(self) -> set[str]:
        index = await self.client.get_model_repository_index(as_json=True)
        return {m["name"] for m in index.get("models", []) if m.get("state") == "READY"}

    async def use(self, model: str) -> None:
        async with self.residency.use(model):
            pass


@pytest.fixture
async def fresh(triton):
    """A clean slate on the test's Triton, and a unique residency state name."""
    client = grpcclient.InferenceServerClient(triton)
    for model in (A, B, C):
        await client.unload_model(model)
    async with asyncio.timeout(30):  # Triton unloads in the background: poll its index until it is done
        while True:
            index = await client.get_model_repository_index(as_json=True)
            if not any(m["name"] in (A, B, C) and m.get("state") in ("READY", "LOADING", "UNLOADING")
                       for m in index.get("models", [])):
                break
            await asyncio.sleep(0.05)
    await client.close()
    return triton, f"test-{uuid.uuid4().hex[:8]}"


async def test_evictions_follow_least_recent_use(fresh):
    instance = Instance(*fresh)
    await instance.use(A)
    await instance.use(B)
    await instance.use(A)  # B is now the least recently used
    await instance.use(C)
    assert await instance._ready() == {A, C}
    assert set(await instance.residency.loaded()) == {A, C}
    await instance.use(B)  # A was used before C: A goes
    assert await instance._ready() == {B, C} and instance.loads == [A, B, C, B]


async def test_a_model_with_requests_in_flight_is_never_unloaded(fresh):
    instance = Instance(*fresh, wait_for_room_s=3)
    async with instance.residency.use(A):  # A is older than B but busy
        await instance.use(B)
        await instance.use(C)  # must evict: B, not the busy A
        assert await instance._ready() == {A, C}
        async with instance.residency.use(C):
            with pytest.raises(NoRoom):  # both loaded models busy: B cannot come in
                await instance.use(B)
    await instance.use(B)  # once they are free, it can
    assert B in await instance._ready()


async def test_concurrent_requests_from_two_workers_share_one_load(fresh):
    workers = [Instance(*fresh), Instance(*fresh)]  # same instance name: shared state
    await asyncio.gather(*(workers[i % 2].use(A) for i in range(10)))
    assert sum(len(w.loads) for w in workers) == 1
    assert await workers[0]._ready() == {A}


async def test_idle_models_are_unloaded_after_the_ttl(fresh):
    instance = Instance(*fresh, idle_ttl_s=1.0)
    await instance.use(A)
    await instance.residency.sweep()
    assert await instance._ready() == {A}  # not idle long enough yet
    instance.clock.ahead_s += 1.5  # idle for longer than the TTL
    await instance.residency.sweep()
    assert await instance._ready() == set() and await instance.residency.loaded() == {}


async def test_pinned_models_are_loaded_at_start_and_never_evicted(fresh):
    instance = Instance(*fresh, pinned={A}, idle_ttl_s=0.0)
    await instance.residency.load_pinned()
    assert await instance._ready() == {A}
    await instance.use(B)
    await instance.use(C)  # the budget forces an eviction: B, not the pinned A
    await instance.residency.sweep()  # idle TTL 0: everything idle goes, but A
    assert await instance._ready() == {A}


async def test_a_model_larger_than_the_budget_is_refused(fresh):
    instance = Instance(*fresh)
    with pytest.raises(ModelTooLarge, match="budget"):
        await instance.use("retouch")  # default footprint 3 GiB > 2.5 GiB
    assert instance.loads == []
