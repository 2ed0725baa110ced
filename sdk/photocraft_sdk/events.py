"""Following a job's (or batch's) events: resumable, each event exactly once, in ``seq`` order.

A *stream opener* is ``open_stream(after) -> AsyncIterator[dict]``: it connects, yields the
decoded messages whose ``seq`` should be above ``after``, and raises :class:`StreamInterrupted`
when the connection breaks or :class:`StreamRefused` when it must not be retried.
:func:`websocket_stream` is the real one; tests may pass fakes to :func:`follow`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from urllib.parse import urlencode

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt
from tenacity.wait import wait_base, wait_exponential, wait_random
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from .errors import StreamInterrupted, StreamRefused

TERMINAL = frozenset({"completed", "failed", "cancelled"})
REFUSALS = {4401: "no token", 4403: "wrong token", 4404: "unknown job or batch"}

StreamOpener = Callable[[int], AsyncIterator[dict]]


def job_ended(message: Mapping) -> bool:
    """True for a job's terminal event: completed, failed or cancelled."""
    return message.get("type") in TERMINAL


def batch_ended(message: Mapping) -> bool:
    """True for the batch_progress event that counts every job of the batch as ended."""
    return message.get("type") == "batch_progress" and message["done"] + message["failed"] == message["total"]


def websocket_stream(events_url: str, token: str, *, open_timeout: float = 10) -> StreamOpener:
    """The stream opener of ``events_url`` (``ws://…/events``) with the job's (batch's) ``token``."""

    async def open_stream(after: int) -> AsyncIterator[dict]:
        query = urlencode({"token": token, **({"after": after} if after else {})})
        try:
            async with connect(f"{events_url}?{query}", open_timeout=open_timeout) as socket:
                async for raw in socket:
                    yield json.loads(raw)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd else 1006
            if code in REFUSALS:
                raise StreamRefused(code, exc.rcvd.reason or REFUSALS[code]) from None
            reason = f" {exc.rcvd.reason}" if exc.rcvd and exc.rcvd.reason else ""
            raise StreamInterrupted(f"connection closed ({code}{reason})", after) from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status < 500:
                raise StreamRefused(status, f"HTTP {status} from {events_url}") from None
            raise StreamInterrupted(f"HTTP {status}", after) from exc
        except InvalidURI as exc:
            raise StreamRefused(0, str(exc)) from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise StreamInterrupted(f"cannot connect to {events_url}: {exc!r}", after) from exc

    return open_stream


async def follow(open_stream: StreamOpener, *, after: int = 0, ended: Callable[[Mapping], bool] = job_ended,
                 attempts: int = 20, wait: wait_base | None = None, heartbeats: bool = False,
                 on_retry: Callable[[StreamInterrupted, float], object] | None = None) -> AsyncIterator[dict]:
    """Yield the events after ``after`` until one for which ``ended`` is true, reconnecting as needed.

    A dropped connection, a close other than 1000/4401/4403/4404, a ``resync`` message, or a stream
    that ends early reconnects with ``after=<last seq seen>``; events with ``seq`` at or below it are
    skipped, so none is lost or repeated. Reconnections back off exponentially with jitter
    (``wait``, a tenacity wait; by default from 0.2 s, or 0.1 s after a connection that brought
    events, doubling up to 5 s, plus up to 0.2 s of jitter); ``attempts`` failed connections in a
    row without a new event (20: about a minute and a quarter) raise :class:`StreamInterrupted`.
    ``on_retry(error, delay_s)`` is called before each wait. Heartbeats (no ``seq``) are yielded
    only when ``heartbeats`` is true. Raises :class:`StreamRefused` on a refusal (bad token,
    unknown job).
    """
    last = progress_mark = after

    def count_failure(state: RetryCallState) -> None:
        nonlocal progress_mark
        state.outcome.exception().after = last
        if last > progress_mark:  # a connection that brought news starts the count and backoff afresh
            progress_mark, state.attempt_number = last, 0

    def report(state: RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.outcome.exception(), state.upcoming_sleep)

    retrying = AsyncRetrying(retry=retry_if_exception_type(StreamInterrupted), stop=stop_after_attempt(attempts),
                             wait=wait or wait_exponential(multiplier=0.2, max=5) + wait_random(0, 0.2),
                             after=count_failure, before_sleep=report, reraise=True)
    async for attempt in retrying:
        with attempt:  # closing this generator early: tenacity re-raises GeneratorExit, not retried
            async with aclosing(open_stream(last)) as messages:
                async for message in messages:
                    if message.get("type") == "resync":
                        raise StreamInterrupted("the server asked to resync", last)
                    seq = message.get("seq")
                    if seq is None:
                        if heartbeats:
                            yield message
                        continue
                    if seq <= last:
                        continue
                    last = seq
                    yield message
                    if ended(message):
                        return
            raise StreamInterrupted("the stream ended before the job did", last)
