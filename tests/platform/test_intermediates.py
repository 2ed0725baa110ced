"""Stage outputs between stages are stored uncompressed and results compressed (images.PNG_INTERMEDIATE,
PNG_RESULT): both lossless, so a multi-stage job's result is, pixel for pixel, what its models give when
called one after another on Triton directly."""

from __future__ import annotations

import json

import numpy as np
import tritonclient.grpc as grpcclient
from skimage import data

from photocraft_common.operations import get_operation, parse_params

from .helpers import download, job_events, png_bytes


def run_directly(model: str, image: np.ndarray, params: dict) -> np.ndarray:
    client = grpcclient.InferenceServerClient("127.0.0.1:8001")
    client.load_model(model)
    inputs = [grpcclient.InferInput("IMAGE", [1, *image.shape], "UINT8"),
              grpcclient.InferInput("PARAMS", [1, 1], "BYTES")]
    inputs[0].set_data_from_numpy(image[np.newaxis])
    inputs[1].set_data_from_numpy(np.array([[json.dumps(params).encode()]], dtype=np.object_))
    return client.infer(model, inputs, outputs=[grpcclient.InferRequestedOutput("IMAGE")]).as_numpy("IMAGE")[0]


async def test_enhance_result_is_its_models_output_pixel_for_pixel(gateway):
    photo = data.coffee()[100:196, 200:328]  # 128 x 96, under every model's tile
    params = {"scale": 2}
    events = await job_events(gateway, "enhance", params, png_bytes(photo))
    assert events[-1]["type"] == "completed", events[-1]
    stages = get_operation("enhance").stages(parse_params("enhance", json.dumps(params)))
    assert [e["stage"] for e in events if e["type"] == "stage_completed"] == [s.name for s in stages]
    expected = photo
    for stage in stages:
        expected = run_directly(stage.models[0], expected, stage.params)
    result = np.asarray(download(events[-1]["results"][0]))
    assert result.shape == expected.shape == (192, 256, 3)
    assert np.array_equal(result, expected)
