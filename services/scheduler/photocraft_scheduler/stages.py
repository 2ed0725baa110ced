"""Stage states (``State``) and their store in Redis, next to the job record (photocraft_common.jobs):

    photocraft:job:<id>:stages   hash  stage -> "queued:<attempt>" | "dispatched:<attempt>" | "done" | "skipped"
    photocraft:job:<id>:outputs  hash  stage -> TaskOutput (protobuf bytes)

Both expire ``ttl_s`` after the job's last state change.
"""

from __future__ import annotations

from redis.asyncio import Redis

from photocraft_common.contracts import TaskOutput
from photocraft_common.jobs import job_key


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
    def dispatched(attempt: int) -> str:
        return f"dispatched:{attempt}"

    @staticmethod
    def is_current(state: str | None, attempt: int) -> bool:
        """Whether a result of ``attempt`` is for the stage's current attempt (``state``: its stage's state)."""
        return state is not None and state.split(":")[-1] == str(attempt)


class StageStore:
    def __init__(self, redis: Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s

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

    async def record_output(self, job_id: str, stage: str, output: TaskOutput) -> None:
        """Store ``stage``'s output; its expiry is renewed by the ``set_state`` that follows."""
        await self._redis.hset(outputs_key(job_id), stage, output.SerializeToString())

    async def set_state(self, job_id: str, stage: str, state: str) -> None:
        """Set ``stage``'s state and renew both hashes' expiry, in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(stages_key(job_id), stage, state)
            for key in (stages_key(job_id), outputs_key(job_id)):
                pipe.expire(key, self._ttl_s)
            await pipe.execute()
