"""Fair sharing of each model's capacity between tiers and tenants.

Kafka has no priorities, so stages do not go to a model's topic when they
are ready: they wait here, in Redis, and are released only while the model
has free credits (the task slots its workers report, minus the tasks out),
in the order of a weighted deficit round robin (Shreedhar and Varghese,
"Efficient Fair Queueing Using Deficit Round Robin", SIGCOMM 1995) across
tiers, each tier's quantum its weight and each stage's size its lane's cost,
and of a round robin across the tenants of a tier. A tier also has a cap on
its tasks out. The topic therefore stays short and the order is this one.
Each released task goes to the topic partition with the fewest tasks out, so
that every worker (each owns some partitions) gets its share of the credits:
keyed by job id, the few tasks out would often pile onto one worker's
partitions while another idles.

Every operation is one Lua script, atomic in Redis, so that any number of
scheduler replicas share one queue: a stage is picked by exactly one of them.
A picked stage is *claimed* until its publisher confirms it was published;
claims older than ``CLAIM_TIMEOUT_MS`` (the publisher died) are handed out
again. Keys, under ``photocraft:sched:``::

    task:<id>                 hash: payload (TaskDispatched bytes), model, tier, tenant, cost
    <model>:q:<tenant>        list of the tenant's task ids for the model, oldest first
    <model>:ring:<tier>       list of the tier's tenants with stages waiting (each once)
    <model>:drr               hash: cursor (tier index), granted (0/1), deficit:<tier>
    <model>:out, tier-out:<tier>   tasks out, per model and per tier
    <model>:partition-out     hash: partition -> tasks out on it
    capacity:<model>          hash: worker -> "<slots>:<until, Unix ms>" (photocraft_common.capacity)
    claimed, out              hashes: task id -> Unix ms of the claim, of the dispatch
    delayed                   zset: task id -> Unix ms when it may be queued again (retries)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from redis.asyncio import Redis

from photocraft_common.capacity import SCHEDULER_PREFIX
from photocraft_common.tiers import Tier, TierPolicy
from photocraft_common.topics import MODEL_TOPIC_PARTITIONS

CLAIM_TIMEOUT_MS = 30_000

# KEYS: none (prefix-built). ARGV: prefix, task id, payload, model, tier, tenant, cost, due ms (0: now).
_ENQUEUE = """
local p, id, model, tier, tenant = ARGV[1], ARGV[2], ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', p..'task:'..id) == 1 then return -1 end
redis.call('HSET', p..'task:'..id, 'payload', ARGV[3], 'model', model, 'tier', tier, 'tenant', tenant,
           'cost', ARGV[7])
if tonumber(ARGV[8]) > 0 then
  redis.call('ZADD', p..'delayed', ARGV[8], id)
  return 0
end
local q = p..model..':q:'..tenant
redis.call('RPUSH', q, id)
if redis.call('LLEN', q) == 1 then redis.call('RPUSH', p..model..':ring:'..tier, tenant) end
return 1
"""

# Move retries whose time has come into their queues. ARGV: prefix, now ms.
_RELEASE_DUE = """
local p = ARGV[1]
local due = redis.call('ZRANGEBYSCORE', p..'delayed', '-inf', ARGV[2])
for _, id in ipairs(due) do
  redis.call('ZREM', p..'delayed', id)
  local t = redis.call('HMGET', p..'task:'..id, 'model', 'tier', 'tenant')
  if t[1] then
    local q = p..t[1]..':q:'..t[3]
    redis.call('RPUSH', q, id)
    if redis.call('LLEN', q) == 1 then redis.call('RPUSH', p..t[1]..':ring:'..t[2], t[3]) end
  end
end
return due
"""

# Pick the next task of a model, and its partition, or nothing. ARGV: prefix, model, now ms,
# partitions, then per tier in rotation order: name, weight, cap. Returns {task id, partition}.
_PICK = """
local p, model, now, partitions = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local slots = 0
local workers = redis.call('HGETALL', p..'capacity:'..model)
for i = 1, #workers, 2 do
  local n, untl = string.match(workers[i + 1], '(%d+):(%d+)')
  if tonumber(untl) > now then slots = slots + tonumber(n) end
end
if tonumber(redis.call('GET', p..model..':out') or '0') >= slots then return false end
local tiers = {}
for i = 5, #ARGV, 3 do
  tiers[#tiers + 1] = {name = ARGV[i], weight = tonumber(ARGV[i + 1]), cap = tonumber(ARGV[i + 2])}
end
local drr = p..model..':drr'
local cursor = tonumber(redis.call('HGET', drr, 'cursor') or '0') % #tiers
local granted = redis.call('HGET', drr, 'granted') == '1'
for _ = 1, 64 * #tiers do
  local tier = tiers[cursor + 1]
  local ring = p..model..':ring:'..tier.name
  local waiting = redis.call('LLEN', ring) > 0
  local capped = tonumber(redis.call('GET', p..'tier-out:'..tier.name) or '0') >= tier.cap
  local tenant, id, cost, deficit
  if waiting and not capped then
    tenant = redis.call('LINDEX', ring, 0)
    id = redis.call('LINDEX', p..model..':q:'..tenant, 0)
    cost = tonumber(redis.call('HGET', p..'task:'..id, 'cost'))
    deficit = tonumber(redis.call('HGET', drr, 'deficit:'..tier.name) or '0')
    if not granted then
      deficit = deficit + tier.weight
      granted = true
      redis.call('HSET', drr, 'deficit:'..tier.name, deficit)
    end
  end
  if waiting and not capped and deficit >= cost then
    redis.call('HSET', drr, 'deficit:'..tier.name, deficit - cost, 'cursor', cursor, 'granted', '1')
    redis.call('LPOP', p..model..':q:'..tenant)
    redis.call('LPOP', ring)
    if redis.call('LLEN', p..model..':q:'..tenant) > 0 then redis.call('RPUSH', ring, tenant) end
    redis.call('INCR', p..model..':out')
    redis.call('INCR', p..'tier-out:'..tier.name)
    redis.call('HSET', p..'claimed', id, now)
    local part, least = 0, nil
    for k = 0, partitions - 1 do
      local n = tonumber(redis.call('HGET', p..model..':partition-out', k) or '0')
      if least == nil or n < least then part, least = k, n end
    end
    redis.call('HINCRBY', p..model..':partition-out', part, 1)
    redis.call('HSET', p..'task:'..id, 'partition', part)
    return {id, part}
  end
  if not waiting then redis.call('HSET', drr, 'deficit:'..tier.name, 0) end
  cursor = (cursor + 1) % #tiers
  granted = false
end
redis.call('HSET', drr, 'cursor', cursor, 'granted', granted and '1' or '0')
return false
"""

# A task's slot is free again (its result came, or it was dropped). ARGV: prefix, task id.
# Returns 1 if the task was out, 0 if it had been finished before.
_FINISH = """
local p, id = ARGV[1], ARGV[2]
local was = redis.call('HDEL', p..'out', id) + redis.call('HDEL', p..'claimed', id)
local t = redis.call('HMGET', p..'task:'..id, 'model', 'tier', 'partition')
if was > 0 and t[1] then
  redis.call('DECR', p..t[1]..':out')
  redis.call('DECR', p..'tier-out:'..t[2])
  if t[3] then redis.call('HINCRBY', p..t[1]..':partition-out', t[3], -1) end
end
redis.call('DEL', p..'task:'..id)
return was
"""


class Picked(NamedTuple):
    task_id: str
    payload: bytes  # TaskDispatched
    partition: int  # of the model's topic


class FairShare:
    """The queue under ``prefix`` in ``redis``; ``clock`` (Unix seconds) dates claims, dispatches and retries."""

    def __init__(self, redis: Redis, tiers: dict[Tier, TierPolicy], prefix: str = SCHEDULER_PREFIX,
                 partitions: int = MODEL_TOPIC_PARTITIONS, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        self.prefix = prefix
        self._partitions = partitions
        # Rotation order: the heaviest tiers first in each round.
        ordered = sorted(tiers.items(), key=lambda item: -item[1].weight)
        self._tier_args = [str(v) for name, policy in ordered
                           for v in (name.value, policy.weight, policy.concurrency)]
        self._enqueue = redis.register_script(_ENQUEUE)
        self._release_due = redis.register_script(_RELEASE_DUE)
        self._pick = redis.register_script(_PICK)
        self._finish = redis.register_script(_FINISH)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def enqueue(self, task_id: str, payload: bytes, model: str, tier: str, tenant: str, cost: int,
                      delay_s: float = 0.0) -> bool:
        """Queue a stage (after ``delay_s``, for a retry); False when the queue holds ``task_id`` already
        (waiting, delayed, claimed or out), which it then leaves as it is."""
        due = self._now_ms() + int(delay_s * 1000) if delay_s else 0
        return await self._enqueue(args=[self.prefix, task_id, payload, model, tier, tenant, cost, due]) != -1

    async def release_due(self) -> list[str]:
        return [i.decode() for i in await self._release_due(args=[self.prefix, self._now_ms()])]

    async def pick(self, model: str) -> Picked | None:
        """Claim the next task of ``model`` if it has a free credit."""
        picked = await self._pick(args=[self.prefix, model, self._now_ms(), self._partitions, *self._tier_args])
        if not picked:
            return None
        task_id, partition = picked[0].decode(), int(picked[1])
        return Picked(task_id, await self._redis.hget(f"{self.prefix}task:{task_id}", "payload"), partition)

    async def confirm(self, task_id: str) -> None:
        """The claimed task is published: it is out until its result comes."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(f"{self.prefix}claimed", task_id)
            pipe.hset(f"{self.prefix}out", task_id, self._now_ms())
            await pipe.execute()

    async def finish(self, task_id: str) -> bool:
        """Free the task's credit; False when it had been finished already."""
        return bool(await self._finish(args=[self.prefix, task_id]))

    async def abandoned_claims(self) -> list[Picked]:
        """Claims whose publisher died before confirming: they are to be published again."""
        cutoff = self._now_ms() - CLAIM_TIMEOUT_MS
        claims = await self._redis.hgetall(f"{self.prefix}claimed")
        stale = [task_id.decode() for task_id, at in claims.items() if int(at) < cutoff]
        found = []
        for task_id in stale:
            payload, partition = await self._redis.hmget(f"{self.prefix}task:{task_id}", "payload", "partition")
            if payload is not None:
                found.append(Picked(task_id, payload, int(partition or 0)))
        return found

    async def overdue(self, older_than_s: float) -> list[str]:
        """Tasks out for longer than ``older_than_s`` without a result."""
        cutoff = self._now_ms() - older_than_s * 1000
        return [i.decode() for i, at in (await self._redis.hgetall(f"{self.prefix}out")).items() if int(at) < cutoff]

    async def waiting(self, model: str, tier: str) -> int:
        """Stages of ``tier`` waiting for ``model``."""
        tenants = await self._redis.lrange(f"{self.prefix}{model}:ring:{tier}", 0, -1)
        return sum([await self._redis.llen(f"{self.prefix}{model}:q:{t.decode()}") for t in tenants])
