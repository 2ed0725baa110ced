"""How many tasks of each model the gpu-inference workers can take at once.

Each worker reports, every few seconds, its slots per model (the tasks it
runs concurrently); the scheduler releases stages to a model's topic only
while the live slots exceed the tasks out (services/scheduler fairshare.py).

    photocraft:sched:capacity:<model>   hash  worker -> "<slots>:<until, Unix ms>"
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

SCHEDULER_PREFIX = "photocraft:sched:"


async def report_capacity(redis: Redis, worker_id: str, models: list[str], slots: int, ttl_s: float,
                          prefix: str = SCHEDULER_PREFIX) -> None:
    until = int((time.time() + ttl_s) * 1000)
    async with redis.pipeline(transaction=False) as pipe:
        for model in models:
            pipe.hset(f"{prefix}capacity:{model}", worker_id, f"{slots}:{until}")
        await pipe.execute()
