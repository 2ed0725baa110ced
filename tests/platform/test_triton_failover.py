"""Killing one of two Triton instances while jobs run: every job completes, once."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import redis.asyncio
from skimage import data

from photocraft_common.models import AVAILABLE

from .helpers import download, events_until, fresh, job_events, png_bytes, submit, supervisorctl, wait_until


def failovers() -> float:
    """Requests the gpu-inference workers moved off a failing instance, from their metrics."""
    total = 0.0
    for port in (9400, 9401):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        total += sum(float(v) for v in re.findall(r"^photocraft_triton_failovers_total\{.*\} (\S+)$", text, re.M))
    return total


INSTANCES = {"127.0.0.1:8001": "infra:triton", "127.0.0.1:8101": "infra:triton-2"}  # gRPC address: program


async def upscaling_instance(model: str = "waifu2x_photo", timeout_s: float = 120) -> str:
    """The program of the first Triton instance seen with ``model`` loaded and a request for it in flight,
    from the workers' residency state in Redis (photocraft_inference/residency.py)."""
    client = redis.asyncio.Redis()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for address, program in INSTANCES.items():
                    state = f"photocraft:residency:{address}"
                    if await client.zscore(f"{state}:loaded", model) is not None and \
                            await client.zcount(f"{state}:inflight:{model}", time.time(), "+inf"):
                        return program
                await asyncio.sleep(0.05)  # a poll of the workers' state
    finally:
        await client.aclose()


async def test_jobs_move_to_the_other_instance_when_one_dies(gateway):
    before = failovers()
    photos = [fresh(data.astronaut()[:384, :384]) for _ in range(4)]  # x2 in tiles: seconds inside Triton
    jobs = [(await submit(gateway, png_bytes(p), operation="enhance", params='{"scale": 2, "denoise": 0}')).json()
            for p in photos]
    followers = [asyncio.create_task(events_until(job, timeout_s=300)) for job in jobs]
    # Kill an instance once an upscale is under way in it (its tiles are then inside Triton).
    killed = await upscaling_instance()
    supervisorctl("signal", "KILL", killed)
    try:
        results = await asyncio.gather(*followers)
    finally:  # supervisord restarts it; leave the platform as it was
        for _ in range(120):
            if "RUNNING" in supervisorctl("status", killed):
                break
            await asyncio.sleep(0.5)  # a poll of a restarting server

    for events in results:
        types = [e["type"] for e in events]
        assert types.count("completed") == 1 and types[-1] == "completed", types
        assert download(events[-1]["results"][0]).size == (768, 768)
    assert failovers() > before, "no request was in flight on the killed instance: the test proved nothing"


async def ready(client: httpx.AsyncClient, port: int) -> bool:
    try:
        return (await client.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2)).status_code == 200
    except httpx.TransportError:
        return False


async def test_service_resumes_on_its_own_after_every_triton_restarted(gateway):
    supervisorctl("restart", "infra:triton", "infra:triton-2")
    async with asyncio.timeout(90), httpx.AsyncClient() as client:
        for port in (8000, 8100):  # both instances up again
            while not await ready(client, port):
                await asyncio.sleep(0.5)  # a poll of a starting server, bounded by the timeout
    # What the workers reported before the restart is still valid for a while: forget it, and wait for
    # a report made since (it is what the scheduler goes by).
    await redis.asyncio.Redis().hdel(AVAILABLE, "u2netp")
    await wait_until("u2netp", available=True, timeout_s=90)
    events = await job_events(gateway, "remove-background", {}, png_bytes(fresh(data.astronaut()[:128, :128])))
    assert events[-1]["type"] == "completed", events[-1]
