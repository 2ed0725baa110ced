"""The scheduler's fair-share queue, its Lua scripts run by the real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
import redis.asyncio

from photocraft_common.capacity import report_capacity
from photocraft_common.tiers import DEFAULT_TIERS, Tier, TierPolicy
from photocraft_scheduler.fairshare import FairShare

WEIGHTS = {Tier.ENTERPRISE: 12, Tier.PRO: 6, Tier.FREE: 2, Tier.ANONYMOUS: 1}
UNCAPPED = {t: TierPolicy(weight=WEIGHTS[t], concurrency=10_000, daily_quota=None) for t in Tier}


@pytest.fixture
async def queue():
    client = redis.asyncio.Redis()
    prefix = f"test:sched:{uuid.uuid4().hex[:8]}:"
    yield FairShare(client, UNCAPPED, prefix), client, prefix
    async for key in client.scan_iter(f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


async def fill(fairshare: FairShare, model: str, tier: Tier, tenants: list[str], per_tenant: int, cost: int = 1):
    for tenant in tenants:
        for n in range(per_tenant):
            await fairshare.enqueue(f"{tier}-{tenant}-{n}-{uuid.uuid4().hex[:6]}", b"task", model, tier.value,
                                    tenant, cost)


async def drain(fairshare: FairShare, model: str, count: int) -> list[str]:
    """Pick ``count`` tasks, finishing each at once (a worker as fast as you like)."""
    picked = []
    for _ in range(count):
        task = await fairshare.pick(model)
        assert task is not None, "a task should have been released"
        picked.append(task[0])
        await fairshare.confirm(task[0])
        await fairshare.finish(task[0])
    return picked


async def test_shares_follow_the_weights_when_every_tier_is_waiting(queue):
    fairshare, client, prefix = queue
    await report_capacity(client, "worker", ["m"], slots=4, ttl_s=60, prefix=prefix)
    for tier in Tier:
        await fill(fairshare, "m", tier, [f"{tier}-tenant"], per_tenant=400)
    window = await drain(fairshare, "m", 420)  # 20 rounds of the 21 units of weight
    shares = Counter(task.split("-")[0] for task in window)
    total = sum(WEIGHTS.values())
    for tier, weight in WEIGHTS.items():
        expected = weight / total
        assert abs(shares[tier.value] / len(window) - expected) <= 0.1 * expected, (tier, shares)


async def test_shares_are_of_work_not_of_tasks(queue):
    fairshare, client, prefix = queue
    await report_capacity(client, "worker", ["m"], slots=4, ttl_s=60, prefix=prefix)
    await fill(fairshare, "m", Tier.PRO, ["heavy-jobs"], per_tenant=200, cost=4)
    await fill(fairshare, "m", Tier.FREE, ["fast-jobs"], per_tenant=200, cost=1)
    window = await drain(fairshare, "m", 100)
    work = Counter()
    for task in window:
        work[task.split("-")[0]] += 4 if task.startswith("pro") else 1
    assert abs(work["pro"] / (work["pro"] + work["free"]) - 6 / 8) < 0.075


async def test_tenants_of_a_tier_take_turns(queue):
    fairshare, client, prefix = queue
    await report_capacity(client, "worker", ["m"], slots=4, ttl_s=60, prefix=prefix)
    await fill(fairshare, "m", Tier.PRO, ["big"], per_tenant=50)  # a 50-image batch, queued first
    await fill(fairshare, "m", Tier.PRO, ["small-a", "small-b"], per_tenant=2)
    first = [task.split("-")[1] for task in await drain(fairshare, "m", 6)]
    assert first == ["big", "small", "small", "big", "small", "small"]


async def test_nothing_is_released_beyond_the_workers_slots_or_a_tiers_cap(queue):
    fairshare, client, prefix = queue
    await fill(fairshare, "m", Tier.PRO, ["t"], per_tenant=10)
    assert await fairshare.pick("m") is None, "no worker has reported any slot"
    await report_capacity(client, "worker", ["m"], slots=3, ttl_s=60, prefix=prefix)
    picked = [await fairshare.pick("m") for _ in range(4)]
    assert [p is not None for p in picked] == [True, True, True, False]
    await fairshare.finish(picked[0][0])
    assert await fairshare.pick("m") is not None

    capped = FairShare(client, {**{t: DEFAULT_TIERS[t] for t in Tier},
                                Tier.FREE: TierPolicy(weight=2, concurrency=1, daily_quota=None)}, prefix + "c:")
    await report_capacity(client, "worker", ["m"], slots=10, ttl_s=60, prefix=prefix + "c:")
    await fill(capped, "m", Tier.FREE, ["f"], per_tenant=5)
    assert await capped.pick("m") is not None and await capped.pick("m") is None


async def test_concurrent_pickers_never_get_the_same_task(queue):
    fairshare, client, prefix = queue
    await report_capacity(client, "worker", ["m"], slots=1000, ttl_s=60, prefix=prefix)
    await fill(fairshare, "m", Tier.PRO, ["a", "b", "c"], per_tenant=100)
    replicas = [FairShare(client, UNCAPPED, prefix) for _ in range(4)]

    async def take_all(replica: FairShare) -> list[str]:
        taken = []
        while (task := await replica.pick("m")) is not None:
            taken.append(task[0])
        return taken

    results = await asyncio.gather(*(take_all(r) for r in replicas))
    everything = [task for taken in results for task in taken]
    assert len(everything) == 300 == len(set(everything))


async def test_claims_not_confirmed_are_handed_out_again_and_finishing_twice_counts_once(queue):
    fairshare, client, prefix = queue
    await report_capacity(client, "worker", ["m"], slots=1, ttl_s=60, prefix=prefix)
    await fill(fairshare, "m", Tier.PRO, ["t"], per_tenant=2)
    task_id = (await fairshare.pick("m")).task_id
    await client.hset(f"{prefix}claimed", task_id, 0)  # as if claimed long ago by a replica that died
    assert [claim.task_id for claim in await fairshare.abandoned_claims()] == [task_id]
    assert await fairshare.finish(task_id) and not await fairshare.finish(task_id)
    assert await fairshare.pick("m") is not None  # its credit came back exactly once


async def test_retries_wait_for_their_delay(queue):
    _, client, prefix = queue
    ahead_s = 0.0  # how far the test has moved the queue's clock on
    fairshare = FairShare(client, UNCAPPED, prefix, clock=lambda: time.time() + ahead_s)
    await report_capacity(client, "worker", ["m"], slots=5, ttl_s=60, prefix=prefix)
    await fairshare.enqueue("retry-1", b"task", "m", "pro", "t", 1, delay_s=0.5)
    assert await fairshare.pick("m") is None and await fairshare.release_due() == []
    ahead_s = 0.6
    assert await fairshare.release_due() == ["retry-1"]
    assert (await fairshare.pick("m"))[0] == "retry-1"


async def test_tasks_out_are_spread_evenly_over_the_partitions(queue):
    fairshare, client, prefix = queue
    await report_capacity(client, "worker", ["m"], slots=12, ttl_s=60, prefix=prefix)
    await fill(fairshare, "m", Tier.PRO, ["t"], per_tenant=13)
    picked = [await fairshare.pick("m") for _ in range(12)]
    assert sorted(p.partition for p in picked) == sorted(list(range(6)) * 2)  # the default 6 partitions
    freed = next(p for p in picked if p.partition == 4)
    await fairshare.confirm(freed.task_id)
    await fairshare.finish(freed.task_id)
    assert (await fairshare.pick("m")).partition == 4  # the one with the fewest tasks out
