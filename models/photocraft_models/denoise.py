"""Denoising with Intel Open Image Denoise (OIDN 2.5, Apache-2.0) through pyoidn.

OIDN's RT filter is trained on rendered images; on photographs it works best
given the sRGB values as they are (measured: astronaut with Gaussian noise
sigma 25, 29.0 dB as sRGB against 27.0 dB when linearised first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .devices import AUTO, Placement, oidn_device
from .params import number
from .serving import Output


class Denoise:
    """Filter. PARAMS ``strength`` 0..1 (default 1): blend of the denoised and the input image.

    On a GPU (``placement``, devices.oidn_device) the image goes to OIDN's CUDA
    device as a torch CUDA tensor; otherwise OIDN runs on the CPU.
    """

    runtime = "oidn"

    def __init__(self, version_dir: Path, parameters: dict[str, str], placement: Placement = AUTO) -> None:
        import pyoidn

        self._denoise = pyoidn.denoise
        self.torch_device, self.device = oidn_device(placement)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.torch_device == "cpu":
            return self._denoise(np.ascontiguousarray(x), quality="high")
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(x)).to(self.torch_device)
        return self._denoise(tensor, quality="high").cpu().numpy()

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        strength = number(params, "strength", 1.0, 0.0, 1.0)
        x = image.astype(np.float32) / 255.0
        clean = self._run(x)
        blended = strength * clean + (1.0 - strength) * x
        return Output(np.clip(blended * 255.0 + 0.5, 0, 255).astype(np.uint8))
