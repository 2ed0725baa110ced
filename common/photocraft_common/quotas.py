"""Daily quotas of edits, enforced atomically in Redis.

Each counter is a sorted set of the edits it has seen, scored by time
(``photocraft:quota:<kind>:<id>``); a request for ``n`` edits is granted only
if every counter it touches (an anonymous device's and its IP address's, or
a tenant's) has room for all ``n`` within the last 24 h, and then counts on
all of them at once: one Lua script, so concurrent requests cannot overrun a
limit. When refused, the answer says how long until the oldest edit leaves
the window.

Each edit of a grant is a ``Charge`` (the member ``<request id>:<n>`` on the
grant's counters) that travels with its job in the job record, so that
whoever ends the job can give that one edit back (``return_edit``): once,
whoever tries and however often, because the record's ``edit_returned`` field
is set in the same script that removes the member.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

WINDOW_S = 24 * 3600

# KEYS: counters. ARGV: now ms, window ms, n, request id, then one limit per key.
# Returns {1, 0} when granted, {0, ms until a slot frees} when not.
_TAKE = """
local now, window, n, id = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local wait = 0
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local limit = tonumber(ARGV[4 + i])
  if redis.call('ZCARD', key) + n > limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2]
    wait = math.max(wait, (oldest and tonumber(oldest) or now) + window - now)
  end
end
if wait > 0 then return {0, wait} end
for _, key in ipairs(KEYS) do
  for j = 1, n do redis.call('ZADD', key, now, id .. ':' .. j) end
  redis.call('PEXPIRE', key, window)
end
return {1, 0}
"""

# KEYS[1]: the job record (a hash), then its edit's counters. ARGV: the edit's member, the reason.
# Returns 1 when the edit was given back now, 0 when it had been before, -1 when the record is gone.
_RETURN_EDIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HSETNX', KEYS[1], 'edit_returned', ARGV[2]) == 0 then return 0 end
for i = 2, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""


@dataclass(frozen=True)
class Charge:
    """One edit as a job record keeps it: the member ``member`` on each counter of ``keys``.
    Empty (falsy) for a caller without a daily quota."""

    keys: tuple[str, ...] = ()
    member: str = ""

    def __bool__(self) -> bool:
        return bool(self.keys and self.member)


@dataclass(frozen=True)
class Grant:
    granted: bool
    retry_after_s: int = 0
    request_id: str = ""
    keys: tuple[str, ...] = ()
    edits: int = 0

    def charges(self) -> list[Charge]:
        """One Charge per edit of the grant (``edits`` of them), in order; empty Charges without counters."""
        if not self.keys:
            return [Charge()] * self.edits
        return [Charge(self.keys, f"{self.request_id}:{j}") for j in range(1, self.edits + 1)]


class Quotas:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._take = redis.register_script(_TAKE)
        self._return_edit = redis.register_script(_RETURN_EDIT)

    async def take(self, limits: dict[str, int], edits: int) -> Grant:
        """Count ``edits`` on every counter of ``limits`` (key -> edits per 24 h), or none."""
        if not limits:
            return Grant(True, edits=edits)
        request_id = secrets.token_hex(8)
        keys = [f"photocraft:quota:{name}" for name in limits]
        granted, wait_ms = await self._take(keys=keys, args=[int(time.time() * 1000), WINDOW_S * 1000, edits,
                                                              request_id, *limits.values()])
        return Grant(bool(granted), -(-int(wait_ms) // 1000), request_id, tuple(keys), edits)

    async def give_back(self, grant: Grant) -> None:
        """Undo a grant whose request failed before any of its jobs was recorded."""
        for key in grant.keys:
            await self._redis.zrem(key, *[f"{grant.request_id}:{j}" for j in range(1, grant.edits + 1)])

    async def return_edit(self, record_key: str, charge: Charge, reason: str) -> bool:
        """Give a recorded job's edit back to its counters, once: True when given back by this call; False
        when given back before, when the record (``record_key``, a hash; photocraft_common.jobs) is gone,
        or for an empty ``charge``. ``reason`` is kept in the record's ``edit_returned`` field."""
        if not charge:
            return False
        return await self._return_edit(keys=[record_key, *charge.keys], args=[charge.member, reason]) == 1

    async def used(self, key: str) -> int:
        """The edits counted on the counter ``key`` (as in a Charge) within the last 24 h."""
        await self._redis.zremrangebyscore(key, "-inf", int(time.time() * 1000) - WINDOW_S * 1000)
        return await self._redis.zcard(key)
