"""Glue between Triton's python backend and the algorithms of this package.

Each ``models/repository/<name>/1/model.py`` is two lines: it picks an
algorithm class and the kind of model it is, for example::

    from photocraft_models.serving import serve
    from photocraft_models.tone import Tone
    TritonPythonModel = serve("filter", Tone)

An algorithm class is built once per model instance as
``Algorithm(version_dir, parameters)``, where ``version_dir`` is the model's
version folder (weights live there) and ``parameters`` the string parameters
of its config.pbtxt. Its ``__call__`` depends on the kind, which the model's
config.pbtxt also declares as parameter ``photocraft.kind`` so that
gpu-inference knows how to call it:

``filter``     ``(image, params) -> Output``; tensors IMAGE, PARAMS -> IMAGE, INFO [, MASK]
``segmenter``  ``(image) -> mask``; IMAGE -> MASK, float32 in [0, 1], any size
``analyzer``   ``(image, params) -> dict``; IMAGE, PARAMS -> INFO
``generator``  ``(params, on_step) -> image``; PARAMS -> a stream of INFO
               progress responses ({"step", "steps"}), then IMAGE (decoupled and
               unbatched: tensors have no batch axis)

Images are ``(H, W, 3) uint8 RGB``; masks ``(H, W) uint8``; PARAMS and INFO
are JSON objects in one-element BYTES tensors. An algorithm raises
``InvalidInput`` for input it cannot process: the request fails with
INVALID_ARG and a message starting ``invalid-input:``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("photocraft.models")


class InvalidInput(ValueError):
    """The request's image or parameters cannot be processed; the message says why."""


@dataclass
class Output:
    """What a filter returns: the image, an optional mask of the pixels it may
    have changed, and information for the client (``warnings``: list of str)."""

    image: np.ndarray
    mask: np.ndarray | None = None
    info: dict = field(default_factory=dict)


def _json_tensor(pb_utils, name: str, value: dict, batched: bool = True):
    """A JSON object as a BYTES tensor: (1, 1) for batching models, (1,) for the others."""
    array = np.array([json.dumps(value).encode()], dtype=np.object_)
    return pb_utils.Tensor(name, array[np.newaxis] if batched else array)


def _params(pb_utils, request) -> dict:
    tensor = pb_utils.get_input_tensor_by_name(request, "PARAMS")
    if tensor is None:
        return {}
    raw = tensor.as_numpy().reshape(-1)[0]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _image(pb_utils, request) -> np.ndarray:
    return pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()[0]


def _filter(pb_utils, algorithm, request):
    result: Output = algorithm(_image(pb_utils, request), _params(pb_utils, request))
    tensors = [pb_utils.Tensor("IMAGE", np.ascontiguousarray(result.image)[np.newaxis]),
               _json_tensor(pb_utils, "INFO", result.info)]
    if result.mask is not None:
        tensors.append(pb_utils.Tensor("MASK", np.ascontiguousarray(result.mask)[np.newaxis]))
    return pb_utils.InferenceResponse(tensors)


def _segmenter(pb_utils, algorithm, request):
    masks = [algorithm(image) for image in pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()]
    return pb_utils.InferenceResponse([pb_utils.Tensor("MASK", np.stack(masks).astype(np.float32))])


def _analyzer(pb_utils, algorithm, request):
    info = algorithm(_image(pb_utils, request), _params(pb_utils, request))
    return pb_utils.InferenceResponse([_json_tensor(pb_utils, "INFO", info)])


HANDLERS: dict[str, Callable] = {"filter": _filter, "segmenter": _segmenter, "analyzer": _analyzer}


def _error(pb_utils, exc: Exception):
    if isinstance(exc, InvalidInput):
        return pb_utils.TritonError(f"invalid-input: {exc}", pb_utils.TritonError.INVALID_ARG)
    log.exception("model failed")
    return pb_utils.TritonError(f"{type(exc).__name__}: {exc}")


def serve(kind: str, algorithm_cls: type) -> type:
    """A TritonPythonModel class that serves ``algorithm_cls`` as a model of ``kind``."""
    import triton_python_backend_utils as pb_utils  # only importable inside Triton

    class TritonPythonModel:
        def initialize(self, args: dict) -> None:
            config = json.loads(args["model_config"])
            version_dir = Path(args["model_repository"]) / args["model_version"]
            parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
            self.algorithm = algorithm_cls(version_dir, parameters)

        def execute(self, requests):
            if kind == "generator":
                for request in requests:
                    self._generate(request)
                return None
            responses = []
            for request in requests:
                try:
                    responses.append(HANDLERS[kind](pb_utils, self.algorithm, request))
                except Exception as exc:  # one bad request must not fail the others
                    responses.append(pb_utils.InferenceResponse(error=_error(pb_utils, exc)))
            return responses

        def _generate(self, request) -> None:
            sender = request.get_response_sender()
            final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

            def on_step(step: int, steps: int) -> None:
                sender.send(pb_utils.InferenceResponse(
                    [_json_tensor(pb_utils, "INFO", {"step": step, "steps": steps}, batched=False)]))

            try:
                image = self.algorithm(_params(pb_utils, request), on_step)
                sender.send(pb_utils.InferenceResponse(
                    [pb_utils.Tensor("IMAGE", np.ascontiguousarray(image))]), flags=final)
            except Exception as exc:
                sender.send(pb_utils.InferenceResponse(error=_error(pb_utils, exc)), flags=final)

    return TritonPythonModel
