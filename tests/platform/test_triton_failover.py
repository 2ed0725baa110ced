"""Killing one of two Triton instances while jobs run: every job completes, once."""

from __future__ import annotations

import asyncio
import re

import httpx
from skimage import data

from .helpers import download, events_until, fresh, job_events, png_bytes, submit, supervisorctl, wait_until


def failovers() -> float:
    """Requests the gpu-inference workers moved off a failing instance, from their metrics."""
    total = 0.0
    for port in (9400, 9401):
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        total += sum(float(v) for v in re.findall(r"^photocraft_triton_failovers_total\{.*\} (\S+)$", text, re.M))
    return total


async def test_jobs_move_to_the_other_instance_when_one_dies(gateway):
    before = failovers()
    photos = [fresh(data.astronaut()[:384, :384]) for _ in range(4)]  # x2 in tiles: seconds inside Triton
    jobs = [(await submit(gateway, png_bytes(p), operation="enhance", params='{"scale": 2, "denoise": 0}')).json()
            for p in photos]
    followers = [asyncio.create_task(events_until(job, timeout_s=300)) for job in jobs]
    # Kill the first instance once an upscale is under way (its tiles are then inside Triton).
    await events_until(jobs[0], stop={"stage_completed"}, timeout_s=120)
    await asyncio.sleep(0.5)
    supervisorctl("signal", "KILL", "infra:triton")
    try:
        results = await asyncio.gather(*followers)
    finally:  # supervisord restarts it; leave the platform as it was
        for _ in range(120):
            if "RUNNING" in supervisorctl("status", "infra:triton"):
                break
            await asyncio.sleep(0.5)

    for events in results:
        types = [e["type"] for e in events]
        assert types.count("completed") == 1 and types[-1] == "completed", types
        assert download(events[-1]["results"][0]).size == (768, 768)
    assert failovers() > before, "no request was in flight on the killed instance: the test proved nothing"


async def test_service_resumes_on_its_own_after_every_triton_restarted(gateway):
    supervisorctl("restart", "infra:triton", "infra:triton-2")
    await wait_until("u2netp", available=True, timeout_s=90)
    events = await job_events(gateway, "remove-background", {}, png_bytes(fresh(data.astronaut()[:128, :128])))
    assert events[-1]["type"] == "completed", events[-1]
