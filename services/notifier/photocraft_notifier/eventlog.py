"""Event logs in Redis Streams, and their live feed over Redis pub/sub.

The notifier appends each JobEvent it consumes from Kafka, once (events with
an ``event_id`` already logged are dropped), to two streams:

- ``photocraft:job:<id>:events`` with the id ``0-<seq>``, ``seq`` counting the
  job's events from 1 (a batch's progress events are logged under the batch id);
- ``photocraft:tenant:<id>:events`` with the id ``0-<cursor>``, ``cursor``
  counting the tenant's events from 1, the newest ``TENANT_LOG_LENGTH`` kept.

Both live as long as the job (``job_ttl_s``). The same script publishes
``<seq> <cursor> <event bytes>`` on the channel ``photocraft:events``, so every
notifier replica sees every event once, whichever replica consumed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from photocraft_common.contracts import JobEvent
from photocraft_common.jobs import job_key

CHANNEL = "photocraft:events"
TENANT_LOG_LENGTH = 10_000

# KEYS: job stream, seen ids, job counter, tenant stream, tenant counter.
# ARGV: event id, event bytes, ttl seconds, tenant log length, channel.
# Returns the job sequence number, or 0 for a duplicate.
_APPEND = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[3])
local cursor = redis.call('INCR', KEYS[5])
redis.call('XADD', KEYS[1], '0-' .. seq, 'event', ARGV[2])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '0-' .. cursor, 'event', ARGV[2], 'seq', seq)
for i = 1, 5 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
redis.call('PUBLISH', ARGV[5], seq .. ' ' .. cursor .. ' ' .. ARGV[2])
return seq
"""


@dataclass(frozen=True, eq=False)  # hashed by identity: one live event is rendered once per process
class Logged:
    """An event with its place in the job's log (``seq``) and the tenant's (``cursor``; 0 if unknown)."""

    seq: int
    cursor: int
    event: JobEvent

    @classmethod
    def from_feed(cls, data: bytes) -> Logged:
        seq, cursor, event = data.split(b" ", 2)
        return cls(int(seq), int(cursor), JobEvent.FromString(event))


def job_stream(job_id: str) -> str:
    return f"{job_key(job_id)}:events"


def tenant_stream(tenant_id: str) -> str:
    return f"photocraft:tenant:{tenant_id}:events"


def _number(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[1])


class EventLog:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._append = redis.register_script(_APPEND)

    async def append(self, event: JobEvent) -> int:
        """Log and publish ``event``; returns its sequence number, 0 if it was logged before."""
        base = job_key(event.job_id)
        keys = [job_stream(event.job_id), f"{base}:event-ids", f"{base}:event-seq",
                tenant_stream(event.tenant_id), f"photocraft:tenant:{event.tenant_id}:event-seq"]
        return await self._append(keys=keys, args=[event.event_id, event.SerializeToString(), self._ttl_s,
                                                   TENANT_LOG_LENGTH, CHANNEL])

    async def job_events(self, job_id: str, after: int, count: int = 100) -> list[Logged]:
        """Up to ``count`` of the job's events with a sequence number above ``after``, oldest first."""
        entries = await self._redis.xrange(job_stream(job_id), min=f"0-{after + 1}", count=count)
        return [Logged(_number(entry_id), 0, JobEvent.FromString(fields[b"event"])) for entry_id, fields in entries]

    async def tenant_events(self, tenant_id: str, after: int, count: int = 100) -> list[Logged]:
        """Up to ``count`` of the tenant's events with a cursor above ``after``, oldest first."""
        entries = await self._redis.xrange(tenant_stream(tenant_id), min=f"0-{after + 1}", count=count)
        return [Logged(int(fields[b"seq"]), _number(entry_id), JobEvent.FromString(fields[b"event"]))
                for entry_id, fields in entries]
