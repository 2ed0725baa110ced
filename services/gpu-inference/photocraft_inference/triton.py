"""Calls to Triton Inference Server over gRPC.

Triton runs with ``--model-control-mode=explicit``: a model is served only
after it has been loaded through the repository API. ``Triton.infer`` loads a
model on first use; concurrent first requests wait for that one load.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from photocraft_common.settings import TritonSettings

log = logging.getLogger("photocraft.inference.triton")

TRANSIENT = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}


class ModelUnavailable(RuntimeError):
    """Triton could not load the model (e.g. its weights are not installed)."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, InferenceServerException) and exc.status() in TRANSIENT


class Triton:
    def __init__(self, settings: TritonSettings, retry_for_s: float = 60.0) -> None:
        self._client = grpcclient.InferenceServerClient(settings.grpc_url)
        self._timeout_s = settings.infer_timeout_s
        self._retry_for_s = retry_for_s
        self._loads: dict[str, asyncio.Lock] = {}

    async def close(self) -> None:
        await self._client.close()

    async def ensure_loaded(self, model: str) -> None:
        """Load ``model`` unless Triton already serves it; raises ModelUnavailable."""
        lock = self._loads.setdefault(model, asyncio.Lock())
        async with lock:
            if await self._retrying(self._client.is_model_ready, model):
                return
            started = time.monotonic()
            try:
                await self._retrying(self._client.load_model, model)
            except InferenceServerException as exc:
                if is_transient(exc):
                    raise
                raise ModelUnavailable(f"Triton cannot load {model}: {exc.message()}") from None
            log.info("loaded %s in %.1f s", model, time.monotonic() - started)

    async def infer(self, model: str, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
        """Run ``model`` on named input tensors and return one output tensor.

        Transient gRPC failures (server restarting, overloaded) are retried
        with exponential backoff and jitter for up to a minute.
        """
        await self.ensure_loaded(model)
        tensors = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = [grpcclient.InferRequestedOutput(output)]
        response = await self._retrying(self._client.infer, model, tensors, outputs=requested,
                                        client_timeout=self._timeout_s)
        return response.as_numpy(output)

    async def _retrying(self, call, *args, **kwargs):
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(initial=0.5, max=10),
            stop=stop_after_delay(self._retry_for_s),
            reraise=True,
        ):
            with attempt:
                return await call(*args, **kwargs)
