"""Per-job event logs in Redis Streams.

The notifier appends each JobEvent it consumes from Kafka to the stream
``photocraft:job:<id>:events`` with the id ``0-<seq>``, where ``seq`` counts
the job's events from 1. A WebSocket reads the stream from any sequence
number on, so a client that connects late, or to another notifier replica,
still gets every event in order. Events already logged (same ``event_id``)
are dropped.
"""

from __future__ import annotations

from redis.asyncio import Redis

from photocraft_common.contracts import JobEvent
from photocraft_common.jobs import job_key

# KEYS: stream, seen ids, counter. ARGV: event id, event bytes, ttl seconds.
# Returns the new sequence number, or 0 for a duplicate.
_APPEND = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
local seq = redis.call('INCR', KEYS[3])
redis.call('XADD', KEYS[1], '0-' .. seq, 'event', ARGV[2])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[3]) end
return seq
"""


def stream_key(job_id: str) -> str:
    return f"{job_key(job_id)}:events"


class EventLog:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._append = redis.register_script(_APPEND)

    async def append(self, event: JobEvent) -> int:
        """Log ``event``; returns its sequence number, 0 if it was logged before."""
        base = job_key(event.job_id)
        keys = [stream_key(event.job_id), f"{base}:event-ids", f"{base}:event-seq"]
        return await self._append(keys=keys, args=[event.event_id, event.SerializeToString(), self._ttl_s])

    async def read(self, job_id: str, after: int, block_ms: int) -> list[tuple[int, JobEvent]]:
        """Events with a sequence number above ``after``, waiting up to ``block_ms`` for one."""
        reply = await self._redis.xread({stream_key(job_id): f"0-{after}"}, block=block_ms, count=100)
        if not reply:
            return []
        return [(int(entry_id.split(b"-")[1]), JobEvent.FromString(fields[b"event"]))
                for entry_id, fields in reply[0][1]]
