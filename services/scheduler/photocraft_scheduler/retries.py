"""What follows a failed attempt of a stage, as a pure function (no I/O): another attempt after an
exponential backoff with jitter, or, when the error is final or the attempts are spent, the job's failure."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .plan import Fail


@dataclass(frozen=True)
class Retry:
    stage: str
    attempt: int  # the next one
    delay_s: float
    reason: str  # "<code>: <message>" of the failed attempt


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of a failed stage: at most ``max_attempts`` in all (the first included), the n-th
    after ``min(max_s, base_s * 2**(n-2))`` seconds times a jitter factor drawn from [0.5, 1]."""

    max_attempts: int = 3
    base_s: float = 2.0
    max_s: float = 60.0

    def after_failure(self, stage: str, attempt: int, code: str, message: str, retryable: bool,
                      uniform: Callable[[float, float], float] = random.uniform) -> Retry | Fail:
        """Retry, or give up (Fail naming the stage) when the error is final or the attempts are spent.

        ``uniform(a, b)`` draws the jitter (``random.uniform``'s signature): retries of many jobs
        that failed together do not come back together.
        """
        if not retryable or attempt >= self.max_attempts:
            return Fail(code, message, stage)
        delay = min(self.max_s, self.base_s * 2 ** (attempt - 1)) * uniform(0.5, 1.0)
        return Retry(stage, attempt + 1, delay, f"{code}: {message}")
