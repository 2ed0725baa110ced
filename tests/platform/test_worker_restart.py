"""A gpu-inference worker killed in the middle of a job does not lose it.

Both Triton instances are paused (SIGSTOP to each server's process group: infra/bin/triton runs
the server with its python backend stubs in a group of its own, beneath the wrapper that supervisord
sees) so the job is certainly in flight in a worker
when the workers are killed (SIGKILL: no clean shutdown, offsets uncommitted).
supervisord restarts them, as Kubernetes would; the restarted workers take
over the partitions and consume the task again.
"""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import httpx
from PIL import Image

from .helpers import events_until, fresh, png_bytes, submit, supervisorctl


def triton_groups() -> list[int]:
    """The process groups of both Triton servers: those of their wrappers' children."""
    groups = set()
    for program in ("infra:triton", "infra:triton-2"):
        wrapper = int(supervisorctl("pid", program).strip())
        children = Path(f"/proc/{wrapper}/task/{wrapper}/children").read_text().split()
        groups |= {os.getpgid(int(child)) for child in children} - {os.getpgid(wrapper)}
    assert len(groups) == 2, f"expected one server group per instance, found {groups}"
    return sorted(groups)


def signal_groups(groups: list[int], signum: int) -> None:
    for group in groups:
        os.killpg(group, signum)


def worker_processes() -> list[str]:
    return [line.split()[0] for line in supervisorctl("status").splitlines()
            if line.startswith("services:gpu-inference")]


async def test_job_survives_its_worker_being_killed(gateway, astronaut):
    paused = triton_groups()
    signal_groups(paused, signal.SIGSTOP)
    try:
        job = (await submit(gateway, png_bytes(fresh(astronaut)), "astronaut.png")).json()
        before = await events_until(job, stop={"started"}, timeout_s=60)
        killed = worker_processes()
        supervisorctl("signal", "KILL", *killed)
    finally:
        signal_groups(paused, signal.SIGCONT)

    events = await events_until(job, timeout_s=180)

    types = [e["type"] for e in events]
    assert types.count("completed") == 1 and types[-1] == "completed", types
    starts = [e for e in events if e["type"] == "started"]
    assert len(starts) >= 2, "the task must have been consumed again after the kill"
    assert starts[0]["worker_id"] == before[-1]["worker_id"] != starts[-1]["worker_id"]
    image = Image.open(io.BytesIO(httpx.get(events[-1]["result_url"], timeout=30).content))
    assert image.mode == "RGBA" and image.size == (512, 512)
    assert all("RUNNING" in supervisorctl("status", name) for name in killed)
