"""A gpu-inference worker killed in the middle of a job does not lose it.

Both Triton instances are paused (SIGSTOP) so the job is certainly in flight in a worker
when the workers are killed (SIGKILL: no clean shutdown, offsets uncommitted).
supervisord restarts them, as Kubernetes would; the restarted workers take
over the partitions and consume the task again.
"""

from __future__ import annotations

import io

import httpx
from PIL import Image

from .helpers import events_until, fresh, png_bytes, submit, supervisorctl


def worker_processes() -> list[str]:
    return [line.split()[0] for line in supervisorctl("status").splitlines()
            if line.startswith("services:gpu-inference")]


async def test_job_survives_its_worker_being_killed(gateway, astronaut):
    supervisorctl("signal", "STOP", "infra:triton", "infra:triton-2")
    try:
        job = (await submit(gateway, png_bytes(fresh(astronaut)), "astronaut.png")).json()
        before = await events_until(job, stop={"started"}, timeout_s=60)
        killed = worker_processes()
        supervisorctl("signal", "KILL", *killed)
    finally:
        supervisorctl("signal", "CONT", "infra:triton", "infra:triton-2")

    events = await events_until(job, timeout_s=180)

    types = [e["type"] for e in events]
    assert types.count("completed") == 1 and types[-1] == "completed", types
    starts = [e for e in events if e["type"] == "started"]
    assert len(starts) >= 2, "the task must have been consumed again after the kill"
    assert starts[0]["worker_id"] == before[-1]["worker_id"] != starts[-1]["worker_id"]
    image = Image.open(io.BytesIO(httpx.get(events[-1]["result_url"], timeout=30).content))
    assert image.mode == "RGBA" and image.size == (512, 512)
    assert all("RUNNING" in supervisorctl("status", name) for name in killed)
