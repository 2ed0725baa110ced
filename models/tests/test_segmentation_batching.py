"""U²-Net-p batched: the numpy path, the serving graph for Triton's onnxruntime backend, and
the python backend's execute() that stacks the requests Triton hands it. Real weights (the
ones `make weights` installs), real photos from skimage.data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import triton_stand_in
from photocraft_models.segmentation import U2Net
from photocraft_models.serving import serve
from photocraft_models.serving_graph import serving_model, write
from PIL import Image
from skimage import data

WEIGHTS = Path(__file__).resolve().parents[2] / "var" / "weights" / "u2netp"
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera"]


def photo(name: str) -> np.ndarray:
    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.asarray(Image.fromarray(pixels).resize((320, 320), Image.Resampling.LANCZOS))


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory) -> Path:
    for name in ("model.onnx", "model.int8.onnx"):
        assert (WEIGHTS / name).is_file(), f"{WEIGHTS / name} is missing: run `make weights`"
    directory = tmp_path_factory.mktemp("u2netp")
    for name in ("model.onnx", "model.int8.onnx"):
        (directory / name).symlink_to(WEIGHTS / name)
    return directory


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return np.stack([photo(name) for name in PHOTOS])


@pytest.fixture(scope="module")
def fp32(version_dir) -> U2Net:
    return U2Net(version_dir, {"precision": "fp32"})


def test_serving_graph_gives_the_masks_of_the_numpy_path(version_dir, fp32, photos, tmp_path):
    target = write(version_dir / "model.onnx", tmp_path / "model.serving.onnx")
    session = onnxruntime.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape) for i in session.get_inputs()] == [("IMAGE", "tensor(uint8)", ["N", 320, 320, 3])]
    assert [(o.name, o.type, o.shape) for o in session.get_outputs()] == [("MASK", "tensor(float)", ["N", 320, 320])]
    masks = session.run(["MASK"], {"IMAGE": photos})[0]
    expected = np.stack([fp32(image) for image in photos])
    assert masks.shape == (len(PHOTOS), 320, 320) and masks.dtype == np.float32
    assert np.abs(masks - expected).max() < 1e-4
    assert masks.min() >= 0 and masks.max() <= 1
    assert all(0.01 < (mask > 0.5).mean() < 0.95 for mask in masks)  # subjects found, not empty masks
    black = session.run(["MASK"], {"IMAGE": np.zeros((1, 320, 320, 3), np.uint8)})[0]
    assert np.isfinite(black).all()
    # the same input gives the same bytes: the derived file is reproducible
    assert target.read_bytes() == serving_model(__import__("onnx").load(version_dir / "model.onnx")).SerializeToString()


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_batch_is_one_run_with_the_masks_of_single_runs(version_dir, photos, precision):
    model = U2Net(version_dir, {"precision": precision})
    batched = model.batch(photos)
    assert batched.shape == (len(PHOTOS), 320, 320) and batched.dtype == np.float32
    assert np.abs(batched - np.stack([model(image) for image in photos])).max() < 1e-5


def test_u2net_rejects_other_shapes(fp32):
    from photocraft_models.serving import InvalidInput

    with pytest.raises(InvalidInput, match=r"\(N, 320, 320, 3\)"):
        fp32.batch(np.zeros((2, 256, 256, 3), np.uint8))
    with pytest.raises(InvalidInput):
        fp32(np.zeros((320, 320), np.uint8))


class CountingSession:
    """Wraps an onnxruntime session and counts its runs."""

    def __init__(self, session) -> None:
        self.session, self.runs = session, []

    def run(self, outputs, feeds):
        self.runs.append({name: value.shape for name, value in feeds.items()})
        return self.session.run(outputs, feeds)


def _args(directory: Path, kind: str = "CPU") -> dict:
    config = {"name": "u2netp", "parameters": {"precision": {"string_value": "fp32"}}}
    return {"model_config": json.dumps(config), "model_repository": str(directory.parent),
            "model_version": directory.name, "model_name": "u2netp", "model_instance_kind": kind,
            "model_instance_device_id": "0"}


def test_one_execute_with_k_requests_runs_the_network_once(version_dir, fp32, photos, monkeypatch):
    pb = triton_stand_in.install(monkeypatch)
    model = serve("segmenter", U2Net)()
    model.initialize(_args(version_dir))
    assert pb.Logger.lines == ["u2netp: running on cpu"]
    counter = CountingSession(model.algorithm.session)
    model.algorithm.session = counter
    requests = [pb.Request(IMAGE=photos[0:1]), pb.Request(IMAGE=photos[1:3]),
                pb.Request(IMAGE=np.zeros((1, 256, 256, 3), np.uint8)),  # wrong size: fails alone
                pb.Request(IMAGE=photos[3:4]), pb.Request(IMAGE=photos[4:5])]
    responses = model.execute(requests)
    assert counter.runs == [{model.algorithm.input_name: (5, 3, 320, 320)}]  # one run, five images
    assert len(responses) == len(requests)
    bad = responses[2]
    assert bad.has_error() and bad.error.code() == pb.TritonError.INVALID_ARG
    assert bad.error.message().startswith("invalid-input: IMAGE must be uint8 (N, 320, 320, 3)")
    good = [r for i, r in enumerate(responses) if i != 2]
    assert not any(r.has_error() for r in good)
    masks = np.concatenate([r.tensor("MASK") for r in good])
    assert [r.tensor("MASK").shape[0] for r in good] == [1, 2, 1, 1]
    assert np.abs(masks - np.stack([fp32(image) for image in photos])).max() < 1e-5


class Broken:
    input_shape = (4, 4, 3)

    def __init__(self, version_dir, parameters) -> None:
        self.calls = 0

    def __call__(self, image):
        raise AssertionError("a batchable segmenter is called through batch()")

    def batch(self, images):
        self.calls += 1
        raise RuntimeError("out of memory")


def test_a_failing_batch_fails_each_of_its_requests_and_keeps_the_invalid_one_apart(tmp_path, monkeypatch):
    pb = triton_stand_in.install(monkeypatch)
    model = serve("segmenter", Broken)()
    model.initialize(_args(tmp_path / "1"))
    requests = [pb.Request(IMAGE=np.zeros((1, 4, 4, 3), np.uint8)), pb.Request(IMAGE=np.zeros((1, 4, 4), np.uint8)),
                pb.Request(IMAGE=np.zeros((2, 4, 4, 3), np.uint8))]
    responses = model.execute(requests)
    assert model.algorithm.calls == 1
    assert [r.error.message() for r in responses] == [
        "RuntimeError: out of memory", "invalid-input: IMAGE must be uint8 (N, 4, 4, 3), not (1, 4, 4)",
        "RuntimeError: out of memory"]


def test_selfie_stays_one_image_at_a_time(tmp_path, monkeypatch):
    from photocraft_models.segmentation import Selfie

    pb = triton_stand_in.install(monkeypatch)
    model = serve("segmenter", Selfie)()
    model.initialize(_args(tmp_path / "1"))
    assert not model.batched
    astronaut = data.astronaut()
    responses = model.execute([pb.Request(IMAGE=astronaut[np.newaxis]), pb.Request(IMAGE=astronaut[np.newaxis, :200])])
    assert [r.tensor("MASK").shape for r in responses] == [(1, 512, 512), (1, 200, 512)]
