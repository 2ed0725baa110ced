"""Background work of a service: periodic loops and long-running tasks, cancelled cleanly on shutdown.

``every`` runs one piece of work on a period, forever, logging (never raising) a failed round, so
that a dependency away for a moment (Redis, Kafka, Triton) costs one round, not the loop.
``Background`` holds a service's tasks: started after startup, cancelled and awaited on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn

log = logging.getLogger("photocraft.background")


async def every(interval_s: float, work: Callable[[], Awaitable[object]], what: str, *,
                first_wait: bool = True, logger: logging.Logger = log,
                sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> NoReturn:
    """Await ``work()`` every ``interval_s`` seconds until cancelled, waiting first unless ``first_wait``
    is False. A round that raises is logged with ``what`` (e.g. "residency sweep") and the loop goes on.
    ``sleep`` may be replaced by a test's clock."""
    if first_wait:
        await sleep(interval_s)
    while True:
        try:
            await work()
        except Exception:  # logged; the next round tries again
            logger.exception("%s failed; next try in %g s", what, interval_s)
        await sleep(interval_s)


class Background:
    """A set of asyncio tasks owned by one service (or one component of it)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def start(self, work: Coroutine[Any, Any, object], name: str | None = None) -> asyncio.Task:
        """Run ``work`` as a task held here until it ends or ``stop`` cancels it."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s ended with an error", task.get_name(), exc_info=task.exception())

    def __len__(self) -> int:
        return len(self._tasks)

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # errors were logged when the tasks ended
