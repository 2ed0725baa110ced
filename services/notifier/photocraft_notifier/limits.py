"""Open WebSockets per client, counted across notifier replicas: per client address and per credential.

Each admitted connection holds a lease in two Redis sorted sets, ``photocraft:connections:ip:<address>``
and ``photocraft:connections:credential:<sha256 of the token, API key or device token>`` (member: the
connection's random id; score: when its lease ends, epoch ms). A connection is admitted only while both
sets hold fewer live leases than their limit: one Lua script, so replicas cannot overrun a limit
together. One over is closed with CLOSE_CODE 4429 (docs/events.md). A process renews the leases of its
connections every LEASE_S / 3 s (one loop) and drops a lease when its connection ends; the leases of a
process that died lapse within LEASE_S. The address is the peer's, or the one a trusted proxy forwarded
for (PHOTOCRAFT_TRUSTED_PROXIES, see main.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import WebSocket
from redis.asyncio import Redis
from redis.exceptions import RedisError

from photocraft_common.background import every

log = logging.getLogger("photocraft.notifier.limits")

CLOSE_CODE = 4429
LEASE_S = 60.0
PREFIX = "photocraft:connections"
REASONS = ("too many connections from this address", "too many connections with this credential")

# KEYS: the address's and the credential's sets. ARGV: now ms, lease ms, connection id, then one limit per key.
# Returns 0 when admitted (the connection then holds a lease in every set), else the 1-based index of
# the first set that is full.
_ADMIT = """
local now, lease, member = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then return i end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + lease, member)
  redis.call('PEXPIRE', key, lease)
end
return 0
"""


def counters(address: str, credential: str) -> tuple[str, str]:
    """The Redis keys counting ``address``'s and ``credential``'s connections (the credential hashed)."""
    return f"{PREFIX}:ip:{address}", f"{PREFIX}:credential:{hashlib.sha256(credential.encode()).hexdigest()}"


class Connections:
    """At most ``per_ip`` open connections per client address and ``per_credential`` per credential.

    ``clock``: epoch seconds (tests move it to let leases lapse). Methods raise redis' errors when Redis
    cannot be reached, except ``release``, which logs them (the lease then lapses by itself).
    """

    def __init__(self, redis: Redis, per_ip: int, per_credential: int, lease_s: float = LEASE_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._admit = redis.register_script(_ADMIT)
        self._limits = (per_ip, per_credential)
        self._lease_ms = int(lease_s * 1000)
        self._clock = clock
        self._held: dict[str, tuple[str, str]] = {}  # connection id -> its counters
        self._renewing: asyncio.Task | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def acquire(self, connection: str, address: str, credential: str) -> str | None:
        """Give ``connection`` a lease for ``address`` and ``credential``; None when admitted, else why not
        (one of REASONS), and then nothing is counted."""
        keys = counters(address, credential)
        full = await self._admit(keys=list(keys), args=[self._now_ms(), self._lease_ms, connection, *self._limits])
        if full:
            return REASONS[int(full) - 1]
        self._held[connection] = keys
        return None

    async def release(self, connection: str) -> None:
        """Drop ``connection``'s lease, if it holds one."""
        keys = self._held.pop(connection, ())
        try:
            for key in keys:
                await self._redis.zrem(key, connection)
        except RedisError:
            log.warning("could not release a connection's lease; it lapses within %g s", self._lease_ms / 1000)

    async def renew(self) -> None:
        """Extend the lease of every connection held by this process to LEASE_S from now."""
        held = dict(self._held)
        if not held:
            return
        ends = self._now_ms() + self._lease_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for connection, keys in held.items():
                for key in keys:
                    pipe.zadd(key, {connection: ends})
                    pipe.pexpire(key, self._lease_ms)
            await pipe.execute()
        for connection in held.keys() - self._held.keys():  # released meanwhile: renewed by mistake
            for key in held[connection]:
                await self._redis.zrem(key, connection)

    def held(self) -> int:
        """Connections holding a lease in this process."""
        return len(self._held)

    @asynccontextmanager
    async def admit(self, websocket: WebSocket, credential: str) -> AsyncIterator[bool]:
        """Around an accepted ``websocket`` that follows a feed with ``credential``: True while it holds a
        lease; False after closing it with CLOSE_CODE when its address or credential is at its limit."""
        connection = secrets.token_hex(12)
        address = websocket.client.host if websocket.client else "unknown"
        refusal = await self.acquire(connection, address, credential)
        if refusal is not None:
            await websocket.close(CLOSE_CODE, refusal)
            yield False
            return
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.create_task(every(self._lease_ms / 3000, self.renew, "connection leases",
                                                       logger=log), name="connection leases")
        try:
            yield True
        finally:
            await self.release(connection)
