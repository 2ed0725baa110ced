"""``every`` and ``Background`` (photocraft_common.background) with a test clock: nothing waits for real time."""

from __future__ import annotations

import asyncio
import logging

import pytest

from photocraft_common.background import Background, every


class Enough(Exception):
    """Raised by the test clock to end an ``every`` loop after a number of waits."""


class Clock:
    """A ``sleep`` for ``every`` that records each wait in ``log`` and ends the loop at the ``rounds``-th."""

    def __init__(self, log: list, rounds: int) -> None:
        self.log = log
        self.rounds = rounds

    async def sleep(self, seconds: float) -> None:
        self.log.append(("sleep", seconds))
        if sum(entry[0] == "sleep" for entry in self.log) >= self.rounds:
            raise Enough


def worker(log: list, failing: tuple[int, ...] = ()):
    """Work that logs its round (from 1) and raises on the rounds in ``failing``."""
    async def work() -> None:
        log.append(("work", len([e for e in log if e[0] == "work"]) + 1))
        if log[-1][1] in failing:
            raise RuntimeError(f"round {log[-1][1]} failed")
    return work


async def test_every_waits_first_then_works_on_every_interval():
    log: list = []
    with pytest.raises(Enough):
        await every(2.5, worker(log), "test work", sleep=Clock(log, 3).sleep)
    assert log == [("sleep", 2.5), ("work", 1), ("sleep", 2.5), ("work", 2), ("sleep", 2.5)]


async def test_every_without_first_wait_works_at_once():
    log: list = []
    with pytest.raises(Enough):
        await every(7, worker(log), "test work", first_wait=False, sleep=Clock(log, 2).sleep)
    assert log == [("work", 1), ("sleep", 7), ("work", 2), ("sleep", 7)]


async def test_every_goes_on_after_a_failing_round_and_logs_it(caplog):
    log: list = []
    logger = logging.getLogger("photocraft.test.every")
    with caplog.at_level(logging.ERROR, logger.name), pytest.raises(Enough):
        await every(1, worker(log, failing=(2,)), "test work", first_wait=False, logger=logger,
                    sleep=Clock(log, 4).sleep)
    assert [e[1] for e in log if e[0] == "work"] == [1, 2, 3, 4]  # round 2 failed; 3 and 4 still ran
    failures = [r for r in caplog.records if r.name == logger.name]
    assert [r.getMessage() for r in failures] == ["test work failed; next try in 1 s"]
    assert failures[0].exc_info[1].args == ("round 2 failed",)


async def test_every_stops_when_cancelled_even_while_working():
    started, never = asyncio.Event(), asyncio.Event()

    async def work() -> None:
        started.set()
        await never.wait()

    task = asyncio.create_task(every(1, work, "test work", first_wait=False, sleep=Clock([], 100).sleep))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):  # a cancellation is not a failed round
        await task


async def test_background_stop_cancels_each_task_and_waits_for_it_to_end():
    background = Background()
    running, cleaned_up = asyncio.Event(), []

    async def service_loop(name: str) -> None:
        try:
            running.set()
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # clean-up that itself awaits: stop must wait for it
            cleaned_up.append(name)

    tasks = [background.start(service_loop(name), name) for name in ("a", "b")]
    await running.wait()
    assert len(background) == 2
    await background.stop()
    assert sorted(cleaned_up) == ["a", "b"]
    assert all(task.cancelled() for task in tasks) and len(background) == 0


async def test_background_stop_ends_an_every_loop():
    background, log = Background(), []
    blocked = asyncio.Event()

    async def sleep(seconds: float) -> None:
        log.append(seconds)
        blocked.set()
        await asyncio.Event().wait()  # a wait that only cancellation ends

    task = background.start(every(30, worker([]), "test work", sleep=sleep), "loop")
    await blocked.wait()
    await background.stop()
    assert task.cancelled() and log == [30]


async def test_background_logs_a_task_that_failed_and_forgets_tasks_that_ended(caplog):
    background = Background()

    async def fails() -> None:
        raise ValueError("broken")

    async def ends() -> None:
        pass

    with caplog.at_level(logging.ERROR, "photocraft.background"):
        failed, ended = background.start(fails(), "failing task"), background.start(ends(), "short task")
        await asyncio.wait([failed, ended])
        await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert len(background) == 0
    assert [r.getMessage() for r in caplog.records] == ["background task failing task ended with an error"]
    assert isinstance(caplog.records[0].exc_info[1], ValueError)
    await background.stop()  # nothing left to stop
