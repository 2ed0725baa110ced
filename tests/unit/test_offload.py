"""photocraft_common.offload: worker processes at a lower priority, smallest job first, a bound on waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from photocraft_common.offload import NICENESS, Crashed, Offload, Slots
from photocraft_common.problems import Problem


def stamp(label: str, seconds: float = 0.0) -> tuple[str, int, int, float, float]:
    """(label, worker pid, its nice value, start, end) of a nap of ``seconds``; runs in a worker."""
    start = time.monotonic()
    time.sleep(seconds)
    return label, os.getpid(), os.getpriority(os.PRIO_PROCESS, 0), start, time.monotonic()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def test_jobs_run_in_niced_worker_processes_two_at_a_time():
    offload = Offload(workers=2, waiting=64)

    async def main():
        return await asyncio.gather(*(offload.run(stamp, str(n), 0.3) for n in range(5)))

    runs = asyncio.run(main())
    assert {pid for _, pid, *_ in runs} - {os.getpid()} == {pid for _, pid, *_ in runs}
    assert {nice for *_, nice, _, _ in runs} == {min(19, os.getpriority(os.PRIO_PROCESS, 0) + NICENESS)}
    overlaps = [sum(s <= t < e for *_, s, e in runs) for *_, t, _ in runs]
    assert max(overlaps) == 2


def test_waiting_jobs_run_smallest_first():
    offload = Offload(workers=1, waiting=64)

    async def main():
        busy = asyncio.create_task(offload.run(stamp, "busy", 0.5))
        await asyncio.sleep(0)  # the one worker is taken
        queued = [asyncio.create_task(offload.run(stamp, label, cost=cost))
                  for label, cost in [("49 MP", 49e6), ("small", 65e3), ("12 MP", 12e6)]]
        return [await busy] + await asyncio.gather(*queued)

    runs = asyncio.run(main())
    assert [label for label, *_ in sorted(runs, key=lambda run: run[3])] == ["busy", "small", "12 MP", "49 MP"]


def test_a_cancelled_waiter_gives_up_its_place():
    slots = Slots(1)

    async def main() -> int:
        await slots.acquire()
        gone = asyncio.create_task(slots.acquire(1))
        stays = asyncio.create_task(slots.acquire(2))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        slots.release()
        await asyncio.wait_for(stays, 1)
        slots.release()
        await asyncio.wait_for(slots.acquire(), 1)  # the slot came back: nothing leaked
        return len(slots)

    assert asyncio.run(main()) == 0


def test_too_many_waiting_jobs_get_server_busy():
    offload = Offload(workers=1, waiting=1)

    async def main() -> Problem:
        first = asyncio.create_task(offload.run(time.sleep, 0.5))
        second = asyncio.create_task(offload.run(time.sleep, 0))
        await asyncio.sleep(0)  # one runs, one waits
        try:
            with pytest.raises(Problem) as caught:
                await offload.run(time.sleep, 0)
        finally:
            await asyncio.gather(first, second)
        return caught.value

    problem = asyncio.run(main())
    assert (problem.status, problem.slug, problem.headers) == (503, "server-busy", {"Retry-After": "2"})


def test_a_worker_that_dies_is_reported_and_replaced():
    offload = Offload(workers=3, waiting=8)

    async def main():
        with pytest.raises(Crashed):
            await offload.run(die)
        return await offload.run(stamp, "after")

    assert asyncio.run(main())[0] == "after"


PARENT = """
import asyncio, os, signal, sys
from photocraft_common.offload import Offload
async def main():
    offload = Offload(workers=2, waiting=8)
    pids = await asyncio.gather(offload.run(os.getpid), offload.run(os.getpid))
    print(*pids, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
asyncio.run(main())
"""


def test_workers_end_with_their_parent_even_after_kill_9():
    parent = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=60)
    assert parent.returncode == -signal.SIGKILL, parent.stderr
    workers = {int(pid) for pid in parent.stdout.split()}
    assert workers and os.getpid() not in workers
    deadline = time.monotonic() + 10
    while (alive := {pid for pid in workers if Path(f"/proc/{pid}").exists()}) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the process table: nothing to wait on for another's orphans
    assert not alive, f"workers {alive} outlived their parent"
