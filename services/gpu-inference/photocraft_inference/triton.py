"""Calls to Triton Inference Server over gRPC.

Triton runs with ``--model-control-mode=explicit``: a model is served only
after it has been loaded through the repository API. ``Triton.config`` loads
a model on first use (concurrent first requests wait for that one load) and
returns its configuration; ``on_load`` hears of every load, with the config.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential_jitter
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from photocraft_common.settings import TritonSettings

log = logging.getLogger("photocraft.inference.triton")

TRANSIENT = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.RESOURCE_EXHAUSTED"}


class ModelUnavailable(RuntimeError):
    """Triton could not load the model (e.g. its weights are not installed)."""


class InvalidStageInput(ValueError):
    """The model refused the request's image or parameters; the message says why."""


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, InferenceServerException) and exc.status() in TRANSIENT


def json_tensor(value: dict) -> np.ndarray:
    """A JSON object as a (1, 1) BYTES tensor."""
    return np.array([[json.dumps(value).encode()]], dtype=np.object_)


def read_json(tensor: np.ndarray) -> dict:
    raw = tensor.reshape(-1)[0]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _raise_refusal(exc: InferenceServerException) -> None:
    message = exc.message() or str(exc)
    if "invalid-input:" in message:
        raise InvalidStageInput(message.split("invalid-input:", 1)[1].strip()) from None
    raise exc


class Triton:
    def __init__(self, settings: TritonSettings,
                 on_load: Callable[[str, dict], Awaitable[None]] | None = None,
                 retry_for_s: float = 60.0) -> None:
        self._client = grpcclient.InferenceServerClient(settings.grpc_url)
        self._timeout_s = settings.infer_timeout_s
        self._retry_for_s = retry_for_s
        self._on_load = on_load
        self._loads: dict[str, asyncio.Lock] = {}
        self._configs: dict[str, dict] = {}

    async def close(self) -> None:
        await self._client.close()

    async def repository(self) -> list[str]:
        """Every model in Triton's model repository, loaded or not."""
        index = await self._client.get_model_repository_index(as_json=True)
        return [entry["name"] for entry in index.get("models", [])]

    async def config(self, model: str) -> dict:
        """``model``'s configuration (as JSON), loading the model if Triton does not serve it.

        Raises ModelUnavailable when Triton cannot load it.
        """
        lock = self._loads.setdefault(model, asyncio.Lock())
        async with lock:
            ready = await self._retrying(self._client.is_model_ready, model)
            if ready and model in self._configs:
                return self._configs[model]
            if not ready:
                started = time.monotonic()
                try:
                    await self._retrying(self._client.load_model, model)
                except InferenceServerException as exc:
                    if is_transient(exc):
                        raise
                    raise ModelUnavailable(f"Triton cannot load {model}: {exc.message()}") from None
                log.info("loaded %s in %.1f s", model, time.monotonic() - started)
            config = (await self._client.get_model_config(model, as_json=True))["config"]
            self._configs[model] = config
            if self._on_load:
                await self._on_load(model, config)
            return config

    async def infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
        """Run ``model`` on named input tensors; returns the named output tensors.

        Transient gRPC failures (server restarting, overloaded) are retried
        with exponential backoff and jitter for up to a minute. Raises
        InvalidStageInput when the model refuses the request.
        """
        await self.config(model)
        requested = [grpcclient.InferRequestedOutput(name) for name in outputs]
        try:
            response = await self._retrying(self._client.infer, model, self._tensors(inputs),
                                            outputs=requested, client_timeout=self._timeout_s)
        except InferenceServerException as exc:
            _raise_refusal(exc)
        return {name: response.as_numpy(name) for name in outputs}

    async def stream(self, model: str, inputs: dict[str, np.ndarray], final_output: str,
                     on_partial: Callable[[dict], Awaitable[None]]) -> np.ndarray:
        """Run a decoupled ``model``: every INFO response goes to ``on_partial``;
        returns ``final_output`` from the response that carries it."""
        await self.config(model)
        tensors = self._tensors(inputs)

        async def request():
            yield {"model_name": model, "inputs": tensors}

        responses = self._client.stream_infer(request(), stream_timeout=self._timeout_s)
        async for result, error in responses:
            if error is not None:
                _raise_refusal(error)
            produced = {out.name for out in result.get_response().outputs}
            if final_output in produced:
                responses.cancel()
                return result.as_numpy(final_output)
            await on_partial(read_json(result.as_numpy("INFO")))
        raise InferenceServerException(f"{model} ended its stream without {final_output}")

    @staticmethod
    def _tensors(inputs: dict[str, np.ndarray]) -> list:
        tensors = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    async def _retrying(self, call, *args, **kwargs):
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(initial=0.5, max=10),
            stop=stop_after_delay(self._retry_for_s),
            reraise=True,
        ):
            with attempt:
                return await call(*args, **kwargs)
