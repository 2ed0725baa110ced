"""Large images go through waifu2x in tiles, and the stitched result shows no seams:
it matches the model run on the whole image at once (a direct call to Triton)."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.grpc as grpcclient
from skimage import data

from .helpers import download, fresh, job_events, png_bytes


def whole_image_on_triton(pixels: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient("127.0.0.1:8001")
    client.load_model("waifu2x_photo")
    image = grpcclient.InferInput("IMAGE", [1, *pixels.shape], "UINT8")
    image.set_data_from_numpy(pixels[np.newaxis])
    params = grpcclient.InferInput("PARAMS", [1, 1], "BYTES")
    params.set_data_from_numpy(np.array([[json.dumps({"noise": -1}).encode()]], dtype=np.object_))
    return client.infer("waifu2x_photo", [image, params]).as_numpy("IMAGE")[0]


async def test_tiled_upscale_matches_the_whole_image(gateway):
    photo = fresh(data.astronaut()[:300, :500])  # 2 x 3 windows of 256 px
    params = {"scale": 2, "denoise": 0, "contrast": 0, "saturation": 0, "sharpen": 0}
    events = await job_events(gateway, "enhance", params, png_bytes(photo))
    tiled = np.asarray(download(events[-1]["results"][0]), dtype=int)
    whole = whole_image_on_triton(photo).astype(int)
    assert tiled.shape == whole.shape == (600, 1000, 3)
    difference = np.abs(tiled - whole)
    # The image's own border is mirrored differently (window vs. image), nowhere else may differ.
    inner = difference[32:-32, 32:-32]
    where = np.unravel_index(inner.argmax(), inner.shape)
    assert inner.max() <= 1, f"seams: largest difference {inner.max()} at {where}"
