"""The platform's side of the speed benchmark: a client as a user writes one, with the probes it needs.

``Client`` submits through the gateway (``POST /v1/jobs``, ``POST /v1/batches``; API key of a tenant
of its own, so that no result of another run or phase is reused), follows its tenant's WebSocket
feed (``/v1/events``, opened once, docs/events.md) for the ``completed`` events, and downloads the
results. ``model_compute_ns`` reads what Triton spent computing a model (its statistics, every
instance); ``unload`` takes a model out of every instance and waits until gpu-inference's residency
state has seen it go (its sweep reconciles with Triton every 15 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import redis.asyncio
import websockets

GATEWAY = "http://127.0.0.1:8080"
NOTIFIER = "ws://127.0.0.1:8081"
TRITON_HTTP = (8000, 8100)  # the local stack's two instances (infra/supervisord.conf); gRPC on the next port


def new_tenant(purpose: str) -> str:
    """The API key of a new enterprise tenant ``bench-<purpose>-<random>`` (photocraft-tenants)."""
    tool = Path(sys.executable).parent / "photocraft-tenants"
    name = f"bench-{purpose}-{uuid.uuid4().hex[:8]}"
    return subprocess.run([tool, "create", name, "--tier", "enterprise"], check=True, capture_output=True,
                          text=True).stdout.strip()


class JobFailed(RuntimeError):
    pass


class Client:
    """One tenant's client. Use ``async with Client(purpose) as client``."""

    def __init__(self, purpose: str, key: str | None = None) -> None:
        self.key = key or new_tenant(purpose)  # a tenant's key lasts across restarts of the platform
        self.http = httpx.AsyncClient(base_url=GATEWAY, timeout=600, headers={"Authorization": f"Bearer {self.key}"},
                                      limits=httpx.Limits(max_connections=64))
        self.downloads = httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=64))  # presigned URLs
        self._ends: dict[str, asyncio.Future] = {}
        self.stages: dict[str, list[str]] = defaultdict(list)  # job id -> the stages a worker started
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> Client:
        self._cursor = 0  # the last position seen on the tenant's feed
        self._connected = asyncio.Event()
        self._reader = asyncio.create_task(self._read())
        await asyncio.wait({self._reader, asyncio.create_task(self._connected.wait())},
                           return_when=asyncio.FIRST_COMPLETED)
        if self._reader.done():
            self._reader.result()  # raises why it could not connect
        return self

    async def __aexit__(self, *exc) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # its failure reached every waiter
            await self._reader
        await self.http.aclose()
        await self.downloads.aclose()

    def _end(self, job_id: str) -> asyncio.Future:
        return self._ends.setdefault(job_id, asyncio.get_running_loop().create_future())

    async def _read(self, attempts: int = 60) -> None:
        """Follow the tenant's feed; when it closes (a notifier restarts, or this client fell behind),
        reconnect with ``after`` the last cursor seen, as docs/events.md says, so nothing is missed."""
        failures = 0
        while True:
            try:
                async with websockets.connect(
                        f"{NOTIFIER}/v1/events" + (f"?after={self._cursor}" if self._cursor else ""),
                        additional_headers={"Authorization": f"Bearer {self.key}"}, max_size=None,
                        ping_interval=None) as socket:  # the notifier sends heartbeats
                    self._connected.set()
                    failures = 0
                    async for raw in socket:
                        self._take(json.loads(raw))
            except (OSError, websockets.WebSocketException) as exc:
                failures += 1
                if failures >= attempts:
                    for future in self._ends.values():
                        if not future.done():
                            future.set_exception(RuntimeError(f"the tenant feed is gone: {exc!r}"))
                    raise
            await asyncio.sleep(min(2.0, 0.1 * 2 ** failures))  # backoff while the notifier restarts

    def _take(self, event: dict) -> None:
        self._cursor = event.get("cursor", self._cursor)
        kind = event["type"]
        if kind == "started":
            self.stages[event["job_id"]].append(event["stage"])
        elif kind in ("completed", "failed", "cancelled") and not self._end(event["job_id"]).done():
            self._end(event["job_id"]).set_result(event)

    async def submit(self, photo: bytes, operation: str = "remove-background", params: dict | None = None) -> str:
        """The job id of ``photo`` (JPEG bytes) submitted; JobFailed unless the gateway answered 202."""
        response = await self.http.post("/v1/jobs", files={"file": ("photo.jpg", photo, "image/jpeg")},
                                        data={"operation": operation, "params": json.dumps(params or {})})
        if response.status_code != 202:
            raise JobFailed(f"submission answered {response.status_code}: {response.text}")
        return response.json()["job_id"]

    async def submit_batch(self, photos: list[bytes], operation: str = "remove-background") -> list[str]:
        """The job ids of ``photos`` (JPEG bytes) submitted as one batch; JobFailed unless answered 202."""
        files = [("files", (f"photo-{n}.jpg", data, "image/jpeg")) for n, data in enumerate(photos)]
        response = await self.http.post("/v1/batches", files=files, data={"operation": operation})
        if response.status_code != 202:
            raise JobFailed(f"batch answered {response.status_code}: {response.text}")
        return [job["job_id"] for job in response.json()["jobs"]]

    async def result(self, job_id: str, timeout_s: float = 900) -> bytes:
        """The job's result image, once its ``completed`` event came. JobFailed for another ending."""
        event = await asyncio.wait_for(self._end(job_id), timeout_s)
        if event["type"] != "completed":
            raise JobFailed(f"job {job_id} {event['type']}: {event}")
        return (await self.downloads.get(event["result_url"])).raise_for_status().content

    async def one(self, photo: bytes, operation: str = "remove-background",
                  params: dict | None = None) -> tuple[float, bytes, str]:
        """Seconds from submitting ``photo`` to its result downloaded, the result, the job's id."""
        start = time.perf_counter()
        job_id = await self.submit(photo, operation, params)
        result = await self.result(job_id)
        return time.perf_counter() - start, result, job_id


async def model_compute_ns(model: str) -> int:
    """Nanoseconds every Triton instance has spent in ``model``'s compute (input, inference, output)
    since it was loaded; an instance that does not have it loaded counts 0."""
    total = 0
    async with httpx.AsyncClient(timeout=10) as http:
        for port in TRITON_HTTP:
            response = await http.get(f"http://127.0.0.1:{port}/v2/models/{model}/stats")
            if response.status_code != 200:
                continue
            for stats in response.json()["model_stats"]:
                inference = stats["inference_stats"]
                total += sum(inference[k]["ns"] for k in ("compute_input", "compute_infer", "compute_output"))
    return total


async def unload(model: str, timeout_s: float = 60) -> float:
    """Unload ``model`` from every Triton instance (repository API) and wait until no residency state
    of gpu-inference counts it as loaded; returns the seconds that wait took. TimeoutError after
    ``timeout_s``."""
    async with httpx.AsyncClient(timeout=60) as http:
        for port in TRITON_HTTP:
            (await http.post(f"http://127.0.0.1:{port}/v2/repository/models/{model}/unload")).raise_for_status()
    states = [f"photocraft:residency:127.0.0.1:{port + 1}:loaded" for port in TRITON_HTTP]
    start = time.monotonic()
    async with redis.asyncio.Redis() as client:
        while time.monotonic() - start < timeout_s:
            if all([await client.zscore(key, model) is None for key in states]):
                return time.monotonic() - start
            await asyncio.sleep(0.5)  # the sweep runs on its own clock: nothing to wait on but polling
    raise TimeoutError(f"gpu-inference still counts {model} as loaded {timeout_s} s after it was unloaded")
