"""Glue between Triton's python backend and the algorithms of this package.

Each ``models/repository/<name>/1/model.py`` is two lines: it picks an
algorithm class and the kind of model it is, for example::

    from photocraft_models.serving import serve
    from photocraft_models.tone import Tone
    TritonPythonModel = serve("filter", Tone)

An algorithm class is built once per model instance as
``Algorithm(version_dir, parameters)``, where ``version_dir`` is the model's
version folder (weights live there) and ``parameters`` the string parameters
of its config.pbtxt. A class with GPU code names its ``runtime`` (``torch``,
``onnxruntime``, ``ncnn``, ``oidn``) and also takes a ``devices.Placement``
(from the instance's KIND_GPU / KIND_CPU), and says in ``device`` where it
runs; ``initialize`` logs that, and fails the load when the config says
KIND_GPU and the model is not on a GPU (no silent CPU fallback). Its
``__call__`` depends on the kind, which the model's
config.pbtxt also declares as parameter ``photocraft.kind`` so that
gpu-inference knows how to call it:

``filter``     ``(image, params) -> Output``; tensors IMAGE, PARAMS -> IMAGE, INFO [, MASK]
``segmenter``  ``(image) -> mask``; IMAGE -> MASK, float32 in [0, 1], any size.
               A segmenter with a fixed ``input_shape`` also has ``batch(images)``,
               ``(N, *input_shape) -> (N, H, W)``: ``execute`` stacks the images of
               every request Triton hands it (validated first: a bad request fails
               alone) and runs the model once (dynamic batching for real)
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

from .devices import NoGpu, Placement, on_gpu

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


def segment_batched(pb_utils, algorithm, requests) -> list:
    """One response per request, with one ``algorithm.batch`` call for all valid requests.

    Each request's IMAGE ``(n_i, *algorithm.input_shape)`` is checked first; a
    request that fails the check gets its own INVALID_ARG error. The others are
    concatenated along N, segmented at once and split back in order. Should the
    batched call itself fail, every request in it gets that error.
    """
    responses: list = [None] * len(requests)
    images, owners = [], []
    for index, request in enumerate(requests):
        tensor = pb_utils.get_input_tensor_by_name(request, "IMAGE")
        array = None if tensor is None else tensor.as_numpy()
        if array is None or array.ndim != 4 or array.shape[1:] != tuple(algorithm.input_shape) \
                or array.dtype != np.uint8:
            shape = None if array is None else array.shape
            error = InvalidInput(f"IMAGE must be uint8 (N, {', '.join(map(str, algorithm.input_shape))}), "
                                 f"not {shape}")
            responses[index] = pb_utils.InferenceResponse(error=_error(pb_utils, error))
            continue
        images.append(array)
        owners.append(index)
    if images:
        try:
            masks = np.asarray(algorithm.batch(np.concatenate(images)), np.float32)
            parts = np.split(masks, np.cumsum([len(a) for a in images])[:-1])
            for index, part in zip(owners, parts, strict=True):
                responses[index] = pb_utils.InferenceResponse([pb_utils.Tensor("MASK", np.ascontiguousarray(part))])
        except Exception as exc:
            for index in owners:
                responses[index] = pb_utils.InferenceResponse(error=_error(pb_utils, exc))
    return responses


def _analyzer(pb_utils, algorithm, request):
    info = algorithm(_image(pb_utils, request), _params(pb_utils, request))
    return pb_utils.InferenceResponse([_json_tensor(pb_utils, "INFO", info)])


HANDLERS: dict[str, Callable] = {"filter": _filter, "segmenter": _segmenter, "analyzer": _analyzer}


def _error(pb_utils, exc: Exception):
    if isinstance(exc, InvalidInput):
        return pb_utils.TritonError(f"invalid-input: {exc}", pb_utils.TritonError.INVALID_ARG)
    log.exception("model failed")
    return pb_utils.TritonError(f"{type(exc).__name__}: {exc}")


def build(algorithm_cls: type, version_dir: Path, parameters: dict[str, str], placement: Placement, name: str):
    """``algorithm_cls`` built for ``placement``. Raises NoGpu when the placement is a GPU and the
    class has no GPU code, or the instance it built does not run on a GPU."""
    if getattr(algorithm_cls, "runtime", None) is None:
        if placement.kind == "gpu":
            raise NoGpu(f"{name}: the config says KIND_GPU, but {algorithm_cls.__name__} runs on the CPU only; "
                        "give it KIND_CPU (models/registry.toml: gpu = false)")
        return algorithm_cls(version_dir, parameters)
    algorithm = algorithm_cls(version_dir, parameters, placement)
    device = getattr(algorithm, "device", "cpu")
    if placement.kind == "gpu" and not on_gpu(device):
        raise NoGpu(f"{name}: the config says KIND_GPU, but the model runs on {device}")
    return algorithm


def serve(kind: str, algorithm_cls: type) -> type:
    """A TritonPythonModel class that serves ``algorithm_cls`` as a model of ``kind``."""
    import triton_python_backend_utils as pb_utils  # only importable inside Triton

    class TritonPythonModel:
        def initialize(self, args: dict) -> None:
            config = json.loads(args["model_config"])
            version_dir = Path(args["model_repository"]) / args["model_version"]
            parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
            name = args.get("model_name", config.get("name", algorithm_cls.__name__))
            self.algorithm = build(algorithm_cls, version_dir, parameters, Placement.from_triton(args), name)
            self.batched = kind == "segmenter" and hasattr(self.algorithm, "batch")
            message = f"{name}: running on {getattr(self.algorithm, 'device', 'cpu')}"
            if hasattr(pb_utils, "Logger"):
                pb_utils.Logger.log_info(message)
            log.info(message)

        def execute(self, requests):
            if kind == "generator":
                for request in requests:
                    self._generate(request)
                return None
            if self.batched:
                return segment_batched(pb_utils, self.algorithm, requests)
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
