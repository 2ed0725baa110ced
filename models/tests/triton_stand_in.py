"""A stand-in for Triton's ``triton_python_backend_utils`` (only importable inside Triton), with just
what photocraft_models.serving uses: enough to run ``execute`` and ``initialize`` in unit tests.
The real server is exercised by tests/platform."""

from __future__ import annotations

import sys
import types

import numpy as np


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    INVALID_ARG = 3

    def __init__(self, message: str, code: int = 0) -> None:
        self._message, self._code = message, code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class InferenceResponse:
    def __init__(self, output_tensors=None, error: TritonError | None = None) -> None:
        self.output_tensors, self.error = output_tensors or [], error

    def has_error(self) -> bool:
        return self.error is not None

    def tensor(self, name: str) -> np.ndarray:
        return next(t.as_numpy() for t in self.output_tensors if t.name() == name)


class Request:
    def __init__(self, **arrays: np.ndarray) -> None:
        self.inputs = {name: Tensor(name, array) for name, array in arrays.items()}


class Logger:
    lines: list[str] = []

    @classmethod
    def log_info(cls, message: str) -> None:
        cls.lines.append(message)


def get_input_tensor_by_name(request: Request, name: str) -> Tensor | None:
    return request.inputs.get(name)


def install(monkeypatch) -> types.ModuleType:
    """Make ``import triton_python_backend_utils`` give this module (for the test's duration)."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", sys.modules[__name__])
    Logger.lines = []
    return sys.modules[__name__]
