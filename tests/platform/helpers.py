"""Talking to the running platform the way a client does, plus a few probes."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import redis.asyncio
import websockets
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from PIL import Image

from photocraft_common.models import ModelDirectory
from photocraft_common.settings import PlatformSettings

GATEWAY = "http://127.0.0.1:8080"
ROOT = Path(__file__).resolve().parents[2]
TERMINAL = {"completed", "failed", "cancelled"}


def supervisorctl(*args: str) -> str:
    """Control the platform's processes (see infra/supervisord.conf)."""
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([bin_dir / "supervisorctl", "-c", ROOT / "infra" / "supervisord.conf", *args],
                            capture_output=True, text=True, check=False)
    return result.stdout


def fresh(pixels: np.ndarray) -> np.ndarray:
    """A copy that differs from every photo sent before in one corner pixel, so the platform
    cannot reuse an earlier job's results for it and really runs every stage."""
    copy = pixels.copy()
    copy[0, 0] = np.frombuffer(os.urandom(copy.shape[2] if copy.ndim == 3 else 1), np.uint8)
    return copy


def tenant_key(tenant: str, tier: str) -> str:
    """A new API key for ``tenant``, from photocraft-tenants."""
    tool = Path(sys.executable).parent / "photocraft-tenants"
    return subprocess.run([tool, "create", tenant, "--tier", tier], check=True, capture_output=True,
                          text=True).stdout.strip()


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


async def submit(gateway: httpx.AsyncClient, content: bytes, filename: str = "photo.png",
                 operation: str = "remove-background", params: str | None = None,
                 headers: dict[str, str] | None = None) -> httpx.Response:
    form = {"operation": operation, **({"params": params} if params is not None else {})}
    return await gateway.post("/v1/jobs", files={"file": (filename, content)}, data=form, headers=headers)


async def events_until(job: dict, stop: set[str] = TERMINAL, timeout_s: float = 120) -> list[dict]:
    """Read the job's WebSocket until an event whose type is in ``stop``; heartbeats are left out."""
    return await events_while(job, lambda events: events[-1]["type"] not in stop, timeout_s)


async def events_while(job: dict, going_on, timeout_s: float = 120) -> list[dict]:
    """The job's (or batch's) events from the first, read until ``going_on(events)`` is false or the
    stream ends; heartbeats are left out."""
    received: list[dict] = []

    async def read() -> None:
        async with websockets.connect(f"{job['events_url']}?token={job['token']}") as socket:
            async for raw in socket:
                event = json.loads(raw)
                if event["type"] == "heartbeat":
                    continue
                received.append(event)
                if not going_on(received):
                    return

    await asyncio.wait_for(read(), timeout_s)
    return received


async def partitions(settings: PlatformSettings, topics: list[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, as the broker describes them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    found = [TopicPartition(t["topic"], p["partition"]) for t in described for p in t["partitions"]]
    assert {tp.topic for tp in found} == set(topics), f"unknown topics among {topics}"
    return found


async def end_offsets(settings: PlatformSettings, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap_servers)
    await consumer.start()
    try:
        return await consumer.end_offsets(await partitions(settings, topics))
    finally:
        await consumer.stop()


async def job_events(gateway: httpx.AsyncClient, operation: str, params: dict | None = None,
                     photo: bytes | None = None, timeout_s: float = 240) -> list[dict]:
    """Submit a job (202 expected) and return all its events, the terminal one last."""
    files = {"file": ("photo.png", photo)} if photo is not None else None
    form = {"operation": operation, "params": json.dumps(params or {})}
    response = await gateway.post("/v1/jobs", files=files, data=form)
    assert response.status_code == 202, response.text
    return await events_until(response.json(), timeout_s=timeout_s)


def download(result: dict) -> Image.Image:
    image = Image.open(io.BytesIO(httpx.get(result["url"], timeout=60).raise_for_status().content))
    image.load()
    return image


def models_tool(*args: str) -> None:
    """Run a models/ script (weights.py, checkpoints.py) in the Triton model environment."""
    subprocess.run([ROOT / ".venv-triton" / "bin" / "python", ROOT / "models" / args[0], *args[1:]],
                   check=True, capture_output=True)


REPOSITORY = ROOT / "var" / "model-repository"


async def wait_until(model: str, available: bool, timeout_s: float = 60) -> None:
    directory = ModelDirectory(redis.asyncio.Redis())
    for _ in range(int(timeout_s * 2)):
        if (model in await directory.available()) == available:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"{model} did not become {'available' if available else 'unavailable'}")


@contextlib.asynccontextmanager
async def absent(model: str):
    """Take ``model`` out of the model repository (and Triton) for a while, whatever is installed."""
    aside = ROOT / "var" / "model-repository.aside" / model
    if (REPOSITORY / model).exists():
        aside.parent.mkdir(exist_ok=True)
        shutil.move(REPOSITORY / model, aside)
    httpx.post(f"http://127.0.0.1:8000/v2/repository/models/{model}/unload")
    try:
        await wait_until(model, available=False)
        yield
    finally:
        shutil.rmtree(REPOSITORY / model, ignore_errors=True)
        httpx.post(f"http://127.0.0.1:8000/v2/repository/models/{model}/unload")
        if aside.exists():
            shutil.move(aside, REPOSITORY / model)


@contextlib.asynccontextmanager
async def random_checkpoint(model: str, tmp_path):
    async with absent(model):
        models_tool("checkpoints.py", model, str(tmp_path))
        models_tool("weights.py", "install-local", model, str(tmp_path))
        await wait_until(model, available=True)
        yield


def start_triton(http_port: int) -> subprocess.Popen:
    """Start infra/bin/triton on HTTP ``http_port`` (gRPC on the next port) in a session of its own, serving
    var/model-repository, and return its process once the server is ready; RuntimeError if it is not
    ready within 60 s or exits before."""
    process = subprocess.Popen([ROOT / "infra" / "bin" / "triton", str(http_port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(120):
        if process.poll() is not None:
            raise RuntimeError(f"the test's Triton instance on {http_port} exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready", timeout=1).status_code == 200:
                return process
        time.sleep(0.5)  # a poll of a starting server: nothing to inject a clock into
    process.terminate()
    process.wait(timeout=30)
    raise RuntimeError(f"the test's Triton instance on {http_port} did not start")


@contextlib.contextmanager
def own_triton(http_port: int):
    """A Triton instance of the test's own (infra/bin/triton) on HTTP ``http_port``, serving
    var/model-repository; yields its gRPC address and stops it on exit."""
    process = start_triton(http_port)
    try:
        yield f"127.0.0.1:{http_port + 1}"
    finally:
        process.terminate()
        process.wait(timeout=30)


def listed(s3, bucket: str, prefix: str) -> list[str]:
    """The keys under ``prefix`` in ``bucket``, in S3's (lexicographic) order."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
