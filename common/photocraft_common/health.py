"""Liveness and readiness of every service: the probes of charts/photocraft.

``GET /healthz`` (liveness) answers 200 ``{"status": "ok", "version": VERSION}`` while the process and its event
loop run; ``VERSION`` is the platform's version, the installed photocraft-common package's (one version for
every package, the chart and the images: tests/unit/test_version.py).
``GET /readyz`` (readiness) runs the service's dependency checks concurrently, each bounded by
``CHECK_TIMEOUT_S``, and answers 200 when every one passed, else 503 naming the failing ones::

    {"status": "unavailable", "failing": ["redis"],
     "checks": {"kafka": "ok", "redis": "ConnectionError: ...", "s3": "ok"}}

Nothing is cached between probes. ``verdict`` is the decision alone (no I/O); ``kafka_check``,
``redis_check``, ``postgres_check`` and ``S3Check`` do the I/O; ``HealthServer`` serves both routes (and
``/metrics``) with aiohttp for the services that have no HTTP server of their own (the gateway and notifier
add them to their FastAPI apps).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import version
from typing import Any

from aiohttp import web

from .metrics import aiohttp_handler

log = logging.getLogger("photocraft.health")

# The platform's version, e.g. "0.14.0", from the installed package's metadata (PackageNotFoundError when
# photocraft-common is not installed).
VERSION = version("photocraft-common")

CHECK_TIMEOUT_S = 2.0  # per check, every check at once
Check = Callable[[], Awaitable[Any]]  # raises when its dependency is unreachable


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


def verdict(results: Mapping[str, BaseException | None]) -> tuple[int, dict]:
    """HTTP status and JSON body of ``/readyz`` from each check's outcome (None: passed).

    200 ``{"status": "ready", "checks": {name: "ok"}}`` when all passed (or there are none), else 503
    ``{"status": "unavailable", "failing": [names, sorted], "checks": {name: "ok" or the error}}``.
    """
    failing = sorted(name for name, error in results.items() if error is not None)
    checks = {name: "ok" if error is None else describe(error) for name, error in sorted(results.items())}
    if failing:
        return 503, {"status": "unavailable", "failing": failing, "checks": checks}
    return 200, {"status": "ready", "checks": checks}


async def probe(checks: Mapping[str, Check], timeout_s: float = CHECK_TIMEOUT_S) -> tuple[int, dict]:
    """Run every check at once, each within ``timeout_s``; returns ``verdict`` of their outcomes."""
    async def run(check: Check) -> BaseException | None:
        try:
            async with asyncio.timeout(timeout_s):
                await check()
        except TimeoutError as exc:
            return exc if str(exc) else TimeoutError(f"no answer within {timeout_s:g} s")
        except Exception as exc:  # any failure means not ready; its text goes into the body
            return exc
        return None

    outcomes = await asyncio.gather(*(run(check) for check in checks.values()))
    status, body = verdict(dict(zip(checks, outcomes, strict=True)))
    if status != 200:
        log.warning("not ready: %s", body["checks"])
    return status, body


def kafka_check(broker, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """A metadata request (DescribeCluster) answered by the cluster of a connected FastStream ``broker``."""
    async def check() -> None:
        if not await broker.ping(timeout_s):
            raise ConnectionError("no answer to a metadata request")
    return check


def postgres_check(engine) -> Check:
    """``SELECT 1`` answered through a SQLAlchemy AsyncEngine (a connection of its pool)."""
    async def check() -> None:
        async with engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
    return check


def redis_check(redis) -> Check:
    """PING answered by a ``redis.asyncio.Redis`` client."""
    async def check() -> None:
        await redis.ping()
    return check


class S3Check:
    """HEAD of the bucket through a boto3 S3 client (the service's own, so the same endpoint, TLS and keys).

    boto3 blocks, so the request runs in a worker thread that a timeout cannot stop; while one is still
    waiting for S3 the next probe fails at once instead of starting another.
    """

    def __init__(self, client, bucket: str) -> None:
        self._client, self._bucket = client, bucket
        self._pending: asyncio.Future | None = None

    async def __call__(self) -> None:
        if self._pending is not None and not self._pending.done():
            raise TimeoutError(f"an earlier HEAD of bucket {self._bucket} has not answered yet")
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._client.head_bucket, Bucket=self._bucket))
        self._pending.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved: no warning
        await asyncio.shield(self._pending)


def checks(*, kafka=None, redis=None, s3=None, bucket: str = "", postgres=None) -> dict[str, Check]:
    """The checks of the dependencies given: a FastStream KafkaBroker, a redis.asyncio client, a boto3
    S3 client with its ``bucket``, a SQLAlchemy AsyncEngine of PostgreSQL."""
    found: dict[str, Check] = {}
    if kafka is not None:
        found["kafka"] = kafka_check(kafka)
    if redis is not None:
        found["redis"] = redis_check(redis)
    if s3 is not None:
        found["s3"] = S3Check(s3, bucket)
    if postgres is not None:
        found["postgres"] = postgres_check(postgres)
    return found


class HealthServer:
    """``/healthz``, ``/readyz``, ``/metrics`` (Prometheus: metrics.aiohttp_handler) and ``routes``, e.g.
    ``{"/debug": handler}``, on ``host:port``, served by aiohttp in the running event loop. Port 0 takes a
    free port (see ``port`` after ``start``).

    ``start`` raises OSError when the address is taken.
    """

    def __init__(self, readiness: Mapping[str, Check], host: str, port: int,
                 routes: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] | None = None) -> None:
        self.readiness, self.host, self.port = readiness, host, port
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        for path, handler in {"/metrics": aiohttp_handler, **(routes or {})}.items():
            app.router.add_get(path, handler)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "version": VERSION})

    async def _readyz(self, request: web.Request) -> web.Response:
        status, body = await probe(self.readiness)
        return web.json_response(body, status=status)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        self.port = self._runner.addresses[0][1]
        log.info("health on http://%s:%d (/healthz, /readyz, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()
