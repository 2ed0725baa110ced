"""Calls to one or more Triton Inference Servers over gRPC, with failover.

Each instance has a health check (``/v2/health/ready`` over gRPC, every few
seconds) and a residency manager (residency.py) that loads and unloads its
models within its memory budget. A request goes to a healthy instance,
preferably one that has the model loaded already (fewest requests in flight
first), else the one with the most room. When an instance fails (connection
refused, unavailable, timed out) it is marked down and the request moves to
another one, with exponential backoff and jitter between attempts. Nothing is
written before a request succeeds, so a retried request writes its result once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import httpx
import numpy as np
import tritonclient.grpc.aio as grpcclient
from redis.asyncio import Redis
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from photocraft_common.background import Background, every

from . import metrics
from .compute import timed
from .residency import Residency
from .residency import budget as residency_budget
from .settings import InferenceSettings

log = logging.getLogger("photocraft.inference.triton")

UNREACHABLE = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED"}
MODEL_GONE = re.compile(r"unknown model|is not ready|is not found|not loaded", re.IGNORECASE)


class ModelUnavailable(RuntimeError):
    """Triton could not load the model (e.g. its weights are not installed)."""


class InvalidStageInput(ValueError):
    """The model refused the request's image or parameters; the message says why."""


class InstanceDown(RuntimeError):
    """The request's instance failed; another one may take it."""


def json_tensor(value: dict) -> np.ndarray:
    """A JSON object as a (1, 1) BYTES tensor."""
    return np.array([[json.dumps(value).encode()]], dtype=np.object_)


def read_json(tensor: np.ndarray) -> dict:
    raw = tensor.reshape(-1)[0]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def tensors(inputs: dict[str, np.ndarray]) -> list[grpcclient.InferInput]:
    """Named arrays as gRPC inputs (set_data_from_numpy returns the input)."""
    return [grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype)).set_data_from_numpy(array)
            for name, array in inputs.items()]


@dataclass
class Instance:
    url: str
    client: grpcclient.InferenceServerClient
    residency: Residency
    healthy: bool = False


async def gpu_budget(metrics_url: str) -> int | None:
    """90 % of the GPU memory Triton reports on its metrics endpoint, or None without a GPU."""
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            text = (await client.get(metrics_url)).text
    except httpx.HTTPError:
        return None
    totals = [float(v) for v in re.findall(r"^nv_gpu_memory_total_bytes\{[^}]*\} (\S+)$", text, re.MULTILINE)]
    return int(0.9 * min(totals)) if totals else None


async def ready_models(client: grpcclient.InferenceServerClient) -> set[str]:
    """The models ``client``'s instance has loaded (state READY)."""
    index = await client.get_model_repository_index(as_json=True)
    return {m["name"] for m in index.get("models", []) if m.get("state") == "READY"}


class TritonPool:
    def __init__(self, settings: InferenceSettings, redis: Redis, footprints: dict[str, int],
                 withheld: Callable[[str], str], on_load: Callable[[str, dict], Awaitable[None]] | None = None) -> None:
        """``withheld(model)``: why not to serve ``model`` (photocraft_common.licences), "" if it may be served."""
        self._settings, self._redis, self._footprints, self._on_load = settings, redis, footprints, on_load
        self._withheld, self._timeout_s = withheld, settings.triton.infer_timeout_s  # withheld: ModelUnavailable
        self.instances: list[Instance] = []
        self._configs: dict[str, dict] = {}
        self._background = Background()  # health checks, residency sweeps, loads of pinned models

    async def start(self) -> None:
        """Connect to every instance, load the pinned models, start health checks and sweeps.
        Call inside the running event loop (gRPC clients bind to it)."""
        residency = self._settings.residency
        for spec in self._settings.triton.instances:
            client = grpcclient.InferenceServerClient(spec.grpc)
            budget = residency_budget(residency, await gpu_budget(spec.metrics) if residency.device == "gpu" else None)
            instance = Instance(spec.grpc, client, Residency(
                self._redis, spec.grpc, budget, self._footprints, residency.default_footprint_bytes,
                set(residency.pinned), residency.idle_ttl_s,
                load=partial(self._load, spec.grpc, client), unload=client.unload_model,
                loaded_now=partial(ready_models, client)))
            self.instances.append(instance)
            log.info("Triton %s: budget %.0f MiB, pinned %s", spec.grpc, budget / 2**20, residency.pinned or "none")
        await asyncio.gather(*(self._check(instance) for instance in self.instances))
        for instance in self.instances:
            self._background.start(every(self._settings.triton.health_interval_s, partial(self._check, instance),
                                         f"Triton {instance.url}: health check", logger=log))
            self._background.start(every(residency.sweep_interval_s, instance.residency.sweep,
                                         f"Triton {instance.url}: residency sweep", logger=log))

    async def close(self) -> None:
        await self._background.stop()
        for instance in self.instances:
            await instance.client.close()

    async def _load(self, url: str, client: grpcclient.InferenceServerClient, model: str) -> None:
        """Load ``model`` on the instance at ``url``; raises InstanceDown or ModelUnavailable."""
        try:
            await client.load_model(model)
        except InferenceServerException as exc:
            if exc.status() in UNREACHABLE:
                raise InstanceDown(f"{url}: {exc.message()}") from None
            raise ModelUnavailable(f"Triton cannot load {model}: {exc.message()}") from None
        if self._on_load:
            config = (await client.get_model_config(model, as_json=True))["config"]
            await self._on_load(model, config)

    async def _check(self, instance: Instance) -> None:
        try:
            healthy = await instance.client.is_server_ready(client_timeout=3)
        except Exception:  # refused, timed out, reset: all mean not ready now
            healthy = False
        if healthy != instance.healthy:
            log.warning("Triton %s is %s", instance.url, "ready" if healthy else "down")
            if healthy and instance.residency.pinned:  # a failure is logged by Background
                self._background.start(self._load_pinned(instance), f"loading the pinned models of {instance.url}")
        instance.healthy = healthy
        metrics.INSTANCE_UP.labels(instance.url).set(int(healthy))

    @staticmethod
    async def _load_pinned(instance: Instance) -> None:
        await instance.residency.sweep()  # a restarted instance has lost its models
        await instance.residency.load_pinned()

    async def repository(self) -> list[str]:
        """Every model in the repository of a healthy instance, loaded or not."""
        instance = next((i for i in self.instances if i.healthy), None)
        if instance is None:
            raise InstanceDown("no Triton instance is ready")
        index = await instance.client.get_model_repository_index(as_json=True)
        return [entry["name"] for entry in index.get("models", [])]

    async def _choose(self, model: str, tried: set[str]) -> Instance:
        candidates = [i for i in self.instances if i.healthy and i.url not in tried] or \
                     [i for i in self.instances if i.healthy]
        if not candidates:
            raise InstanceDown("no Triton instance is ready")
        held = await asyncio.gather(*(i.residency.resident(model) for i in candidates))  # instances at once
        if resident := [i for i, has in zip(candidates, held, strict=True) if has]:
            loads = await asyncio.gather(*(i.residency.in_flight(model) for i in resident))
            return resident[loads.index(min(loads))]
        loaded = await asyncio.gather(*(i.residency.loaded() for i in candidates))
        room = [i.residency.budget - sum(map(i.residency.footprint, m))
                for i, m in zip(candidates, loaded, strict=True)]
        return candidates[room.index(max(room))]

    async def _call(self, model: str, call: Callable[[Instance], Awaitable]):
        """Run ``call`` on an instance holding ``model``, moving to another one on failure."""
        if reason := self._withheld(model):
            raise ModelUnavailable(f"model {model} is withheld: {reason}")
        tried: set[str] = set()
        async for attempt in AsyncRetrying(retry=retry_if_exception_type(InstanceDown), reraise=True,
                                           wait=wait_exponential_jitter(multiplier=0.5, max=10),
                                           stop=stop_after_delay(self._settings.triton.failover_for_s)):
            with attempt:
                instance = await self._choose(model, tried)
                tried.add(instance.url)
                try:
                    async with instance.residency.use(model):  # loads it if need be, then the request
                        return await timed(call(instance))
                except InferenceServerException as exc:
                    message = exc.message() or str(exc)
                    if "invalid-input:" in message:
                        raise InvalidStageInput(message.split("invalid-input:", 1)[1].strip()) from None
                    if exc.status() in UNREACHABLE:
                        instance.healthy = False
                        metrics.FAILOVERS.labels(instance.url).inc()
                        raise InstanceDown(f"{instance.url}: {message}") from None
                    if MODEL_GONE.search(message):  # the instance restarted and lost it
                        await instance.residency.forget(model)
                        raise InstanceDown(f"{instance.url} no longer has {model}") from None
                    raise

    async def config(self, model: str) -> dict:
        """``model``'s Triton configuration (loading it somewhere if no instance has it)."""
        if model not in self._configs:
            async def fetch(instance: Instance) -> dict:
                return (await instance.client.get_model_config(model, as_json=True))["config"]
            self._configs[model] = await self._call(model, fetch)
        return self._configs[model]

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run ``model`` on named input tensors; returns the named output tensors.

        Raises InvalidStageInput when the model refuses the request,
        ModelUnavailable when it cannot be loaded, InstanceDown when no instance
        answered within the failover time.
        """
        async def run(instance: Instance) -> dict[str, np.ndarray]:
            requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
            response = await instance.client.infer(model, tensors(inputs), outputs=requested,
                                                   client_timeout=self._timeout_s)
            return {name: response.as_numpy(name) for name in outputs}
        return await self._call(model, run)

    async def stream(self, model: str, inputs: dict[str, np.ndarray], final_output: str,
                     on_partial: Callable[[dict], Awaitable[None]]) -> np.ndarray:
        """Run a decoupled ``model``: every INFO response goes to ``on_partial``;
        returns ``final_output`` from the response that carries it."""
        async def run(instance: Instance) -> np.ndarray:
            async def request():
                yield {"model_name": model, "inputs": tensors(inputs)}

            responses = instance.client.stream_infer(request(), stream_timeout=self._timeout_s)
            async for result, error in responses:
                if error is not None:
                    raise error
                if final_output in {out.name for out in result.get_response().outputs}:
                    responses.cancel()
                    return result.as_numpy(final_output)
                await on_partial(read_json(result.as_numpy("INFO")))
            raise InferenceServerException(f"{model} ended its stream without {final_output}")
        return await self._call(model, run)
