"""Costly CPU work (decoding uploaded photos) off the event loop: worker processes at a lower CPU
priority, the smallest waiting job first, and a bound on the jobs waiting.

Processes rather than threads: a decode then never holds the service's GIL (Pillow holds it while it
allocates and frees an image's pixels, tens of milliseconds for 49 MP), and a decoder that crashes on
a hostile file ends one worker, not the service. The workers of one size of pool are shared by every
``Offload`` of the process, started on first use with the ``spawn`` method (no inherited threads,
sockets or locks) and niced by NICENESS, so the event loop and the platform's other work come first.
A worker exits as soon as its parent process is gone, however it ended (kill -9 included).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from .problems import Problem

T = TypeVar("T")
NICENESS = 10  # added to the workers' nice value
_POOLS: dict[int, ProcessPoolExecutor] = {}  # by number of workers


class Crashed(RuntimeError):
    """A worker process ended while it ran the job (a crashing decoder, the OOM killer); the pool is renewed."""


class Slots:
    """At most ``n`` holders at once; waiters are served smallest ``cost`` first, then in arrival order."""

    def __init__(self, n: int) -> None:
        self._free, self._order = n, itertools.count()
        self._waiting: list[tuple[float, int, asyncio.Future]] = []

    def __len__(self) -> int:
        return len(self._waiting)  # waiters

    async def acquire(self, cost: float = 0) -> None:
        if self._free and not self._waiting:
            self._free -= 1
            return
        entry = (cost, next(self._order), asyncio.get_running_loop().create_future())
        heapq.heappush(self._waiting, entry)
        try:
            await entry[2]
        except asyncio.CancelledError:
            if entry[2].done() and not entry[2].cancelled():
                self.release()  # granted as it was cancelled: hand the slot on
            else:
                self._waiting.remove(entry)
                heapq.heapify(self._waiting)
            raise

    def release(self) -> None:
        while self._waiting:
            future = heapq.heappop(self._waiting)[2]
            if not future.done():
                future.set_result(None)
                return
        self._free += 1


def _exit_with_parent(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(0)


def _start_worker() -> None:
    """In each worker: lower its priority, and end it when its parent ends."""
    os.nice(NICENESS)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent.sentinel,), daemon=True).start()


def _pool(workers: int) -> ProcessPoolExecutor:
    """The shared pool of ``workers`` processes; a new one starts them all at once (they take a second
    to import Pillow and numpy, better spent before the first photo than while it waits)."""
    if workers not in _POOLS:
        _POOLS[workers] = ProcessPoolExecutor(workers, multiprocessing.get_context("spawn"),
                                              initializer=_start_worker)
        for _ in range(workers):
            _POOLS[workers].submit(os.getpid)
    return _POOLS[workers]


class Offload:
    """Runs picklable module-level functions in ``workers`` worker processes; at most ``waiting`` calls
    wait for one (more: Problem 503 server-busy with Retry-After)."""

    def __init__(self, workers: int, waiting: int) -> None:
        if min(workers, waiting) < 1:
            raise ValueError("workers and waiting must be positive")
        self.workers, self._slots, self._max_waiting = workers, Slots(workers), waiting
        _pool(workers)

    async def run(self, fn: Callable[..., T], *args: object, cost: float = 0) -> T:
        """``fn(*args)`` in a worker, once one is free (smallest ``cost`` first). Raises what ``fn``
        raises, Problem 503 server-busy when ``waiting`` calls wait already, or Crashed."""
        if len(self._slots) >= self._max_waiting:
            raise Problem(503, "server-busy", "Server busy", "too many photos are waiting to be checked; "
                          "retry shortly", {"Retry-After": "2"})
        await self._slots.acquire(cost)
        pool = _pool(self.workers)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            if _POOLS.get(self.workers) is pool:
                del _POOLS[self.workers]
                pool.shutdown(wait=False, cancel_futures=True)
            raise Crashed("a worker process ended while it ran the job") from None
        finally:
            self._slots.release()
