"""The expiry index: what is purged when, so that the storage-janitor never lists the bucket to find it.

One Redis sorted set, ``photocraft:expiry``; each member is scored with the Unix time (seconds) at
which it is due::

    s3:<bucket>/<key>  an S3 object (written by ObjectStore.put before the object itself)
    job:<job_id>       a job's Redis keys (jobs.job_keys; written with the job record)
    batch:<id>         a batch's Redis keys (batches.batch_keys; written with the batch and its jobs)

A job's deadline is its ``created_at`` plus the lifetime (``PlatformSettings.job_ttl_s``, 24 h), and
its objects share it. Scores only ever rise (ZADD GT): a cache object that a later job of the tenant
reuses takes that job's deadline, never more. The janitor takes due entries (score <= now), purges
them, then removes each entry only if its score is still the one it read (``done``): a crash repeats
work instead of losing it, two replicas doing the same entry is harmless, and an entry extended
meanwhile stays.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

INDEX_KEY = "photocraft:expiry"
# A cache object due within this many seconds is not reused (the janitor may be deleting it): the stage
# runs again and writes it afresh, with the new job's deadline.
REUSE_MARGIN_S = 600.0
OBJECT, JOB, BATCH = "s3:", "job:", "batch:"

# KEYS[1]: the index. ARGV: member, score read, member, score read, ... Removes each member whose score
# is still at most the one read (not extended since); returns how many were removed.
_DONE = """
local removed = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""


def object_entry(bucket: str, key: str) -> str:
    return f"{OBJECT}{bucket}/{key}"


def job_entry(job_id: str) -> str:
    return JOB + job_id


def batch_entry(batch_id: str) -> str:
    return BATCH + batch_id


class Entry(NamedTuple):
    member: str
    due: float  # Unix time, seconds


@dataclass
class Due:
    """Due entries by kind: S3 keys by bucket, job ids, batch ids; ``unknown``: members of no known kind."""

    objects: dict[str, list[str]] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)
    batches: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def sort_entries(members: Iterable[str]) -> Due:
    """Split index members by kind (prefix stripped)."""
    due = Due()
    for member in members:
        kind, _, rest = member.partition(":")
        bucket, _, key = rest.partition("/")
        if kind + ":" == OBJECT and bucket and key:
            due.objects.setdefault(bucket, []).append(key)
        elif kind + ":" in (JOB, BATCH) and rest:
            (due.jobs if kind + ":" == JOB else due.batches).append(rest)
        else:
            due.unknown.append(member)
    return due


def reusable(dues: Iterable[float | None], now: float, margin_s: float = REUSE_MARGIN_S) -> bool:
    """Whether objects with these deadlines may be reused at ``now``: none is due within ``margin_s``.
    None (an object not in the index, written before it existed) does not prevent reuse."""
    return all(due is None or due > now + margin_s for due in dues)


class ExpiryIndex:
    """The index in ``redis`` under ``key``; ``lifetime_s`` is the deadline of what has no job to go by.

    Errors are redis-py's (``ConnectionError``, ``TimeoutError``).
    """

    def __init__(self, redis: Redis, lifetime_s: float, key: str = INDEX_KEY) -> None:
        self.redis, self.lifetime_s, self.key = redis, lifetime_s, key
        self._done = redis.register_script(_DONE)

    def schedule(self, pipe: Pipeline | Redis, members: Iterable[str], due: float):
        """Queue (on a pipeline) or send ZADD GT: each member due at ``due`` unless it is due later."""
        return pipe.zadd(self.key, dict.fromkeys(members, due), gt=True)

    async def add(self, members: Iterable[str], due: float | None = None) -> None:
        """Schedule ``members`` for ``due`` (None: ``lifetime_s`` from now); a later deadline is kept."""
        if mapping := list(members):
            await self.schedule(self.redis, mapping, time.time() + self.lifetime_s if due is None else due)

    async def dues(self, members: list[str]) -> list[float | None]:
        """Each member's deadline; None where it is not in the index."""
        return list(await self.redis.zmscore(self.key, members)) if members else []

    async def job_deadline(self, job_id: str) -> float:
        """When everything of ``job_id`` is purged: its entry's score; ``lifetime_s`` from now for a job
        without one (recorded before the index existed, or purged already)."""
        due = await self.redis.zscore(self.key, job_entry(job_id))
        return float(due) if due is not None else time.time() + self.lifetime_s

    async def due(self, now: float, limit: int = 1000) -> list[Entry]:
        """Up to ``limit`` entries due at ``now`` (score <= now), earliest first."""
        found = await self.redis.zrangebyscore(self.key, "-inf", now, start=0, num=limit, withscores=True)
        return [Entry(member.decode(), float(score)) for member, score in found]

    async def done(self, entries: Iterable[Entry]) -> int:
        """Remove ``entries`` unless they were rescheduled since they were read; returns how many went."""
        args = [item for entry in entries for item in (entry.member, repr(entry.due))]
        return int(await self._done(keys=[self.key], args=args)) if args else 0

    async def size(self) -> int:
        return int(await self.redis.zcard(self.key))
