"""Requests per client to the HTTP API (``/v1/``), counted in Redis so that every gateway replica shares them.

A request carrying a valid API key (``Authorization: Bearer pc_…``) counts against that key; any other
(anonymous, a device token, a job's or batch's token, an unknown key) against its client address, which
is the peer's address unless the peer is a trusted proxy (PHOTOCRAFT_TRUSTED_PROXIES; uvicorn's
ProxyHeadersMiddleware puts the address it forwarded for in ``scope["client"]``). Limits are strings in
the ``limits`` library's notation, e.g. ``20/second;600/minute`` (every part must hold), counted in
moving windows: ``photocraft:ratelimit:LIMITER/<ip|key>/<address|sha256 of the key>/…`` sorted sets,
which expire with their window. A request over a limit gets 429 problem+json ``rate-limited`` with
``Retry-After`` before its body is read; these limits come on top of the daily quotas of edits (quotas.py).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from fastapi.security.utils import get_authorization_scheme_param
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from photocraft_common.accounts import Accounts

from .problems import problem_response

Kind = Literal["ip", "key"]
PREFIX = "photocraft:ratelimit"
LIMITED_PATHS = "/v1/"


def parse(value: str, variable: str) -> list[RateLimitItem]:
    """The limits of ``value`` (e.g. ``"20/second;600/minute"``); raises ValueError naming ``variable``."""
    try:
        return parse_many(value)
    except ValueError:
        raise ValueError(f"{variable}: {value!r} is not a rate limit such as '20/second;600/minute'") from None


def retry_after(reset_time: float, now: float) -> int:
    """Whole seconds from ``now`` until ``reset_time`` (both epoch seconds), at least 1 (Retry-After)."""
    return max(1, math.ceil(reset_time - now))


@dataclass(frozen=True)
class Refusal:
    """Why a request is refused: the ``limit`` it would exceed (e.g. "20 per 1 second") and when to retry."""

    kind: Kind
    limit: str
    retry_after_s: int


class RateLimits:
    """Counts each client's requests in ``redis`` (sharing its connection pool) against ``per_ip`` or
    ``per_key`` (``limits`` notation; ValueError when malformed). ``clock``: epoch seconds, for Retry-After."""

    def __init__(self, redis: Redis, accounts: Accounts, per_ip: str, per_key: str,
                 clock: Callable[[], float] = time.time) -> None:
        storage = RedisStorage("async+redis://", implementation="redispy", key_prefix=PREFIX,
                               connection_pool=redis.connection_pool)
        self._limiter = MovingWindowRateLimiter(storage)
        self._accounts = accounts
        self._limits: dict[Kind, list[RateLimitItem]] = {
            "ip": parse(per_ip, "PHOTOCRAFT_RATE_LIMIT_PER_IP"), "key": parse(per_key, "PHOTOCRAFT_RATE_LIMIT_PER_KEY")}
        self._clock = clock

    async def client(self, request: Request) -> tuple[Kind, str]:
        """("key", sha256 of the key) for a request with a valid API key, else ("ip", its client address)."""
        scheme, credential = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() == "bearer" and credential and await self._accounts.by_key(credential) is not None:
            return "key", hashlib.sha256(credential.encode()).hexdigest()
        return "ip", request.client.host if request.client else "unknown"

    async def hit(self, kind: Kind, client: str) -> Refusal | None:
        """Count one request of ``client``; a Refusal (and nothing counted on the limit refused) when it
        would exceed one of its limits. Raises redis' errors when Redis cannot be reached."""
        for item in self._limits[kind]:
            if not await self._limiter.hit(item, kind, client):
                stats = await self._limiter.get_window_stats(item, kind, client)
                return Refusal(kind, str(item), retry_after(stats.reset_time, self._clock()))
        return None


class RateLimitMiddleware:
    """ASGI middleware: a ``/v1/`` request over its client's limit gets 429 ``rate-limited`` before the
    app reads it; Redis out of reach, 503 ``queue-unavailable``; PostgreSQL (an API key's check), 503
    ``database-unavailable``. The limits are the RateLimits of
    ``app.state.platform.rate_limits`` (deps.Platform)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(LIMITED_PATHS):
            return await self.app(scope, receive, send)
        request = Request(scope)
        limits: RateLimits = request.app.state.platform.rate_limits
        try:
            client = await limits.client(request)  # an API key is checked in PostgreSQL
        except (OSError, TimeoutError, OperationalError, InterfaceError):
            response = problem_response(request, 503, "database-unavailable", "Database unavailable",
                                        "the API key could not be checked right now; try again", {"Retry-After": "5"})
            return await response(scope, receive, send)
        try:
            refusal = await limits.hit(*client)
        except RedisError:
            response = problem_response(request, 503, "queue-unavailable", "Queue unavailable",
                                        "the request could not be counted right now; try again", {"Retry-After": "5"})
            return await response(scope, receive, send)
        if refusal is None:
            return await self.app(scope, receive, send)
        who = "this API key" if refusal.kind == "key" else "this address"
        response = problem_response(request, 429, "rate-limited", "Too many requests",
                                    f"more than {refusal.limit} from {who}; retry after {refusal.retry_after_s} s",
                                    {"Retry-After": str(refusal.retry_after_s)})
        await response(scope, receive, send)
