"""Stage states (``State``) and their store in Redis, next to the job record (photocraft_common.jobs):

    photocraft:job:<id>:stages   hash  stage -> "queued:<attempt>" | "dispatched:<attempt>" | "done" | "skipped"
    photocraft:job:<id>:outputs  hash  stage -> TaskOutput (protobuf bytes)

Both expire with the job's record (at its deadline, JobRecord.expires_at), and are written only while the
record exists: a result arriving after the job was purged recreates nothing.
"""

from __future__ import annotations

from redis.asyncio import Redis

from photocraft_common.contracts import TaskOutput
from photocraft_common.jobs import job_key

# KEYS: the job record, the hash to write, then hashes that expire with it too. ARGV: field, value, the lifetime
# in ms (for a record without expiry). Writes only while the record exists, every hash expiring with it;
# returns 1 when written, 0 when the record is gone.
_WRITE = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then return 0 end
if ttl == -1 then ttl = ARGV[3] end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
for i = 2, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
return 1
"""


def stages_key(job_id: str) -> str:
    return f"{job_key(job_id)}:stages"


def outputs_key(job_id: str) -> str:
    return f"{job_key(job_id)}:outputs"


class State:
    """A stage's state: ``queued:<attempt>``, ``dispatched:<attempt>``, ``done`` or ``skipped``."""

    DONE, SKIPPED = "done", "skipped"

    @staticmethod
    def queued(attempt: int) -> str:
        return f"queued:{attempt}"

    @staticmethod
    def queued_attempt(state: str) -> int | None:
        """The attempt of a stage recorded as queued; None for any other state."""
        kind, _, attempt = state.partition(":")
        return int(attempt) if kind == "queued" else None

    @staticmethod
    def dispatched(attempt: int) -> str:
        return f"dispatched:{attempt}"

    @staticmethod
    def ran(state: str) -> bool:
        """Whether a stage in ``state`` has run, or may be running: it is done, or an attempt of it was
        handed to a worker (``dispatched:<n>``, or ``queued:<n>`` for a retry, n > 1). Skipped is not."""
        kind, _, attempt = state.partition(":")
        return state == State.DONE or kind == "dispatched" or (kind == "queued" and attempt != "1")

    @staticmethod
    def is_current(state: str | None, attempt: int) -> bool:
        """Whether a result of ``attempt`` is for the stage's current attempt (``state``: its stage's state)."""
        return state is not None and state.split(":")[-1] == str(attempt)


class StageStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._write = redis.register_script(_WRITE)

    async def states(self, job_id: str) -> dict[str, str]:
        """Every started stage's state; {} for a job with none (or an unknown one)."""
        return {k.decode(): v.decode() for k, v in (await self._redis.hgetall(stages_key(job_id))).items()}

    async def state(self, job_id: str, stage: str) -> str | None:
        raw = await self._redis.hget(stages_key(job_id), stage)
        return raw.decode() if raw is not None else None

    async def outputs(self, job_id: str) -> dict[str, TaskOutput]:
        """The recorded output of each finished (done or skipped) stage."""
        raw = await self._redis.hgetall(outputs_key(job_id))
        return {name.decode(): TaskOutput.FromString(data) for name, data in raw.items()}

    async def record_output(self, job_id: str, stage: str, output: TaskOutput) -> bool:
        """Store ``stage``'s output; False when the job's record is gone (nothing written)."""
        return await self._write(keys=[job_key(job_id), outputs_key(job_id)],
                                 args=[stage, output.SerializeToString(), self._ttl_s * 1000]) == 1

    async def set_state(self, job_id: str, stage: str, state: str) -> bool:
        """Set ``stage``'s state; False when the job's record is gone (nothing written)."""
        return await self._write(keys=[job_key(job_id), stages_key(job_id), outputs_key(job_id)],
                                 args=[stage, state, self._ttl_s * 1000]) == 1
