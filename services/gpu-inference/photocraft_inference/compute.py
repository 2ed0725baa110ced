"""Model compute per task, as the usage ledger bills it (docs/billing.md): the seconds of the Triton
inference requests a task makes, each timed from sent to answered (a model's load is not in it: it
happens before the request, residency.py). Requests made at once (tiles) each count in full.

``with computing() as spent:`` around a task's model step; TritonPool times each request with
``timed``, which adds to the ``spent`` of the task it runs in (a ContextVar, so concurrent tasks on one
pool keep apart; tasks started inside the block share it).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")
_SPENT: ContextVar[list[float] | None] = ContextVar("photocraft_compute_spent", default=None)


@contextmanager
def computing() -> Iterator[list[float]]:
    """The seconds of each inference request made within the block (a list, filled as they end)."""
    spent: list[float] = []
    token = _SPENT.set(spent)
    try:
        yield spent
    finally:
        _SPENT.reset(token)


async def timed(request: Awaitable[T]) -> T:
    """Await an inference ``request``, adding its seconds to the enclosing ``computing`` block's, if any
    (also when it fails: the instance worked on it)."""
    started = time.perf_counter()
    try:
        return await request
    finally:
        if (spent := _SPENT.get()) is not None:
            spent.append(time.perf_counter() - started)
