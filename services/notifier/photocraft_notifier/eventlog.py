"""Event logs in Redis Streams, and their live feed over Redis pub/sub.

The notifier appends each JobEvent it consumes from Kafka, once (events with an ``event_id`` already
logged are dropped), to two streams:

- ``photocraft:job:<id>:events`` with the id ``0-<seq>``, ``seq`` counting the job's events from 1 (a
  batch's progress events are logged under the batch id);
- ``photocraft:tenant:<id>:events`` with the id ``0-<cursor>``, ``cursor`` counting the tenant's events
  from 1 (the counter ``photocraft:tenant:<id>:event-seq`` is kept ``CURSOR_KEPT_S`` after the tenant's
  last event, so that cursors only grow while its log empties by age).

Each entry carries ``expires``, its job's (batch's) deadline in Unix seconds: its entry in the expiry
index (photocraft_common.expiry; a job's is JobRecord.expires_at), or a lifetime (``job_ttl_s``) from
now for an event of no recorded job. Presigned URLs rendered from it end then. The job's log, its
event ids and counter expire at that deadline (the storage-janitor also deletes them then); the event
of a job that was purged (its tombstone is left, its index entry gone) or is due is dropped, so that
nothing recreates its keys. The tenant log drops entries once due: on every append, and every
``TRIM_INTERVAL_S`` for logs without new events (``trim_due``; the index ``photocraft:tenant-logs``
scores each log with its oldest entry's deadline); it keeps at most ``TENANT_LOG_LENGTH``.

The same script publishes ``<seq> <cursor> <expires> <traceparent> <event bytes>`` on the channel
``photocraft:events``, so every notifier replica sees every event once, whichever replica consumed it.
Entries and messages carry the W3C traceparent of the event's handling ("-" in a message when none), so
that its WebSocket sends continue the job's trace (photocraft_common.telemetry).
Errors are redis-py's (``ConnectionError``, ``TimeoutError``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from photocraft_common.contracts import JobEvent
from photocraft_common.expiry import INDEX_KEY, batch_entry, job_entry
from photocraft_common.jobs import job_key, tombstone_key

CHANNEL = "photocraft:events"
TENANT_LOG_LENGTH = 10_000
TENANT_LOGS = "photocraft:tenant-logs"  # sorted set: tenant log key -> its oldest entry's deadline
CURSOR_KEPT_S = 7 * 86400
TRIM_INTERVAL_S = 60.0

# trim(log, now): drop the tenant log's entries due at ``now``: every entry before the first one not due,
# found by bisection on ids (the log is in deadline order but for events of jobs that ran long, which go
# with their neighbours). Returns the oldest kept entry's deadline; nil once the log is empty (deleted).
_TRIM = """
local function due(entry)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'expires' then return tonumber(fields[i + 1]) end
  end
  return 0
end
local function number(id) return tonumber(string.sub(id, 3)) end
local function trim(log, now)
  local first = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if not first then return nil end
  if due(first) > now then return due(first) end
  local last = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
  if due(last) <= now then
    redis.call('DEL', log)
    return nil
  end
  local low, high, oldest = number(first[1]), number(last[1]), due(last)
  while high - low > 1 do
    local middle = math.floor((low + high) / 2)
    local entry = redis.call('XRANGE', log, '0-' .. middle, '+', 'COUNT', 1)[1]
    local n, deadline = number(entry[1]), due(entry)
    if deadline <= now then low = n
    elseif n < high then high, oldest = n, deadline
    else high = middle end
  end
  redis.call('XTRIM', log, 'MINID', '0-' .. high)
  return oldest
end
"""

# KEYS: job log, its event ids, its counter, tenant log, tenant counter, expiry index, the record's
# tombstone, TENANT_LOGS. ARGV: event id, event bytes, now (Unix s), deadline without an index entry,
# lifetime s, tenant log length, channel, index entry, CURSOR_KEPT_S, traceparent.
# Returns the job sequence number; 0 for a duplicate; -1 for an event of a job purged or due.
_APPEND = _TRIM + """
local now = tonumber(ARGV[3])
local expires = redis.call('ZSCORE', KEYS[6], ARGV[8])
if not expires then
  if redis.call('EXISTS', KEYS[7]) == 1 then return -1 end
  expires = ARGV[4]
elseif tonumber(expires) <= now then return -1 end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[3])
local cursor = redis.call('INCR', KEYS[5])
redis.call('XADD', KEYS[1], '0-' .. seq, 'event', ARGV[2], 'expires', expires, 'traceparent', ARGV[10])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '0-' .. cursor, 'event', ARGV[2], 'seq', seq,
           'expires', expires, 'traceparent', ARGV[10])
for i = 1, 3 do redis.call('PEXPIREAT', KEYS[i], math.floor(tonumber(expires) * 1000)) end
redis.call('EXPIRE', KEYS[4], ARGV[5])
redis.call('EXPIRE', KEYS[5], ARGV[9])
local oldest = trim(KEYS[4], now)
if oldest then redis.call('ZADD', KEYS[8], oldest, KEYS[4]) end
local traceparent = ARGV[10] ~= '' and ARGV[10] or '-'
redis.call('PUBLISH', ARGV[7], seq .. ' ' .. cursor .. ' ' .. expires .. ' ' .. traceparent .. ' ' .. ARGV[2])
return seq
"""

# KEYS: a tenant log, TENANT_LOGS. ARGV: now (Unix s). Trims the log and rescores (or removes) its entry.
_TRIM_ONE = _TRIM + """
local oldest = trim(KEYS[1], tonumber(ARGV[1]))
if oldest then redis.call('ZADD', KEYS[2], oldest, KEYS[1]) else redis.call('ZREM', KEYS[2], KEYS[1]) end
"""


@dataclass(frozen=True, eq=False)  # hashed by identity: one live event is rendered once per process
class Logged:
    """An event with its place in the job's log (``seq``) and the tenant's (``cursor``; 0 if unknown), and
    its job's deadline (``expires``, Unix s; None for an entry logged before entries had one), and the W3C
    ``traceparent`` of its handling ("" when none)."""

    seq: int
    cursor: int
    event: JobEvent
    expires: float | None = None
    traceparent: str = ""

    @classmethod
    def from_feed(cls, data: bytes) -> Logged:
        seq, cursor, expires, traceparent, event = data.split(b" ", 4)
        return cls(int(seq), int(cursor), JobEvent.FromString(event), float(expires),
                   "" if traceparent == b"-" else traceparent.decode())


def job_stream(job_id: str) -> str:
    return f"{job_key(job_id)}:events"


def tenant_stream(tenant_id: str) -> str:
    return f"photocraft:tenant:{tenant_id}:events"


def _number(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[1])


def _expires(fields: dict[bytes, bytes]) -> float | None:
    return float(fields[b"expires"]) if b"expires" in fields else None


def _traceparent(fields: dict[bytes, bytes]) -> str:
    return fields.get(b"traceparent", b"").decode()


class EventLog:
    """The logs in ``redis``; ``ttl_s``: the lifetime (``job_ttl_s``); ``clock``: Unix time, seconds."""

    def __init__(self, redis: Redis, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._clock = clock
        self._append = redis.register_script(_APPEND)
        self._trim = redis.register_script(_TRIM_ONE)

    async def append(self, event: JobEvent, traceparent: str = "") -> int:
        """Log and publish ``event`` with ``traceparent`` (W3C, of its handling; "": none); returns its
        sequence number, 0 if it was logged before, -1 if its job (batch) was purged or is due (nothing is
        written)."""
        base, now = job_key(event.job_id), self._clock()
        batch = event.HasField("batch_progress")
        keys = [job_stream(event.job_id), f"{base}:event-ids", f"{base}:event-seq",
                tenant_stream(event.tenant_id), f"photocraft:tenant:{event.tenant_id}:event-seq", INDEX_KEY,
                tombstone_key("batch" if batch else "job", event.job_id), TENANT_LOGS]
        entry = batch_entry(event.job_id) if batch else job_entry(event.job_id)
        return await self._append(keys=keys, args=[
            event.event_id, event.SerializeToString(), repr(now), repr(now + self._ttl_s), self._ttl_s,
            TENANT_LOG_LENGTH, CHANNEL, entry, CURSOR_KEPT_S, traceparent])

    async def trim_due(self, limit: int = 100) -> int:
        """Drop the due entries of every tenant log whose oldest entry is due (TENANT_LOGS), ``limit`` logs
        at a time; returns how many logs were trimmed. Safe on every replica at once."""
        trimmed, now = 0, self._clock()
        while logs := await self._redis.zrangebyscore(TENANT_LOGS, "-inf", now, start=0, num=limit):
            for log in logs:
                await self._trim(keys=[log, TENANT_LOGS], args=[repr(now)])
            trimmed += len(logs)
            if len(logs) < limit:
                break
        return trimmed

    async def job_events(self, job_id: str, after: int, count: int = 100) -> list[Logged]:
        """Up to ``count`` of the job's events with a sequence number above ``after``, oldest first."""
        entries = await self._redis.xrange(job_stream(job_id), min=f"0-{after + 1}", count=count)
        return [Logged(_number(entry_id), 0, JobEvent.FromString(fields[b"event"]), _expires(fields),
                       _traceparent(fields)) for entry_id, fields in entries]

    async def tenant_events(self, tenant_id: str, after: int, count: int = 100) -> list[Logged]:
        """Up to ``count`` of the tenant's events with a cursor above ``after``, oldest first."""
        entries = await self._redis.xrange(tenant_stream(tenant_id), min=f"0-{after + 1}", count=count)
        return [Logged(int(fields[b"seq"]), _number(entry_id), JobEvent.FromString(fields[b"event"]),
                       _expires(fields), _traceparent(fields)) for entry_id, fields in entries]
