"""Dynamic batching for real: Triton groups concurrent u2netp requests into one execute() call,
and the python backend answers each request with its own mask.

The test starts its own Triton instance (infra/bin/triton on ports 8300-8302, the platform's
model repository), so its statistics count only this test's requests and the platform's
instances are not disturbed. That one execute() runs the network once per batch is shown
without Triton in models/tests/test_segmentation_batching.py.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from PIL import Image
from skimage import data

from .helpers import ROOT, own_triton

REQUESTS = 64
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


@pytest.fixture(scope="module")
def triton():
    with own_triton(8300) as address:
        yield address


def photo(name: str) -> np.ndarray:
    pixels = getattr(data, name)()
    return np.asarray(Image.fromarray(pixels).resize((320, 320), Image.Resampling.LANCZOS))[np.newaxis]


async def segment(client: grpcclient.InferenceServerClient, image: np.ndarray) -> np.ndarray:
    tensor = grpcclient.InferInput("IMAGE", list(image.shape), "UINT8")
    tensor.set_data_from_numpy(image)
    result = await client.infer("u2netp", [tensor], outputs=[grpcclient.InferRequestedOutput("MASK")])
    return result.as_numpy("MASK")


async def counts(client: grpcclient.InferenceServerClient) -> tuple[int, int]:
    (stats,) = (await client.get_inference_statistics("u2netp", as_json=True))["model_stats"]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


async def counts_after(client: grpcclient.InferenceServerClient, inferences: int) -> tuple[int, int]:
    """The counts once ``inferences`` are recorded: Triton updates its statistics after it has
    sent a response, so a client can hold all its answers before the counts include them."""
    deadline = time.monotonic() + 10
    while (found := await counts(client))[0] < inferences and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # a poll of Triton's statistics, bounded by the deadline
    return found


async def test_concurrent_requests_run_in_batches_and_each_gets_its_own_mask(triton):
    assert (ROOT / "var" / "model-repository" / "u2netp").is_dir(), "u2netp is not installed: run `make weights`"
    client = grpcclient.InferenceServerClient(triton)
    try:
        await client.load_model("u2netp")
        images = {name: photo(name) for name in PHOTOS}
        alone = {name: await segment(client, image) for name, image in images.items()}  # one request each
        before = await counts(client)

        order = [PHOTOS[i % len(PHOTOS)] for i in range(REQUESTS)]
        masks = await asyncio.gather(*(segment(client, images[name]) for name in order))

        after = await counts_after(client, before[0] + REQUESTS)
        inferences, executions = (end - start for end, start in zip(after, before, strict=True))
        assert inferences == REQUESTS
        assert executions < inferences, "Triton handed every request to execute() alone: no batching"
        for name, mask in zip(order, masks, strict=True):
            assert mask.shape == (1, 320, 320) and mask.dtype == np.float32
            assert np.abs(mask - alone[name]).max() < 1e-5, f"{name}: a batched mask differs from its single run"
        assert len({round(float(m.mean()), 4) for m in masks}) == len(PHOTOS)  # masks did not swap places
    finally:
        await client.unload_model("u2netp")
        await client.close()
