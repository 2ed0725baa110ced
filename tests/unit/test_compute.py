"""gpu-inference's compute accounting (compute.py), with nothing running: each inference request of a task
is timed into that task's block, concurrent tasks keep apart, requests outside a block count nowhere."""

from __future__ import annotations

import asyncio

import pytest

from photocraft_inference.compute import computing, timed


async def request(seconds: float, fail: bool = False) -> str:
    await asyncio.sleep(seconds)
    if fail:
        raise RuntimeError("the instance refused it")
    return "answer"


async def test_each_request_of_a_task_counts_in_its_block_and_tasks_keep_apart():
    async def task(seconds: float, tiles: int) -> list[float]:
        with computing() as spent:
            await asyncio.gather(*(timed(request(seconds)) for _ in range(tiles)))  # tiles at once
            assert await timed(request(0)) == "answer"
        return spent

    slow, quick = await asyncio.gather(task(0.05, 3), task(0.0, 2))
    assert len(slow) == 4 and len(quick) == 3
    assert sum(slow) >= 3 * 0.05 and sum(quick) < 0.05  # each tile in full: more than the wall time


async def test_a_failed_request_counts_and_one_outside_a_block_counts_nowhere():
    with computing() as spent, pytest.raises(RuntimeError):
        await timed(request(0.01, fail=True))
    assert len(spent) == 1 and spent[0] >= 0.01
    assert await timed(request(0)) == "answer"  # no block: nothing to add to
    assert len(spent) == 1
