"""The device each runtime chooses: pure choice functions fed with what a runtime would see,
so that every branch (GPU present, absent, asked for and missing) runs on any machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import triton_stand_in
from photocraft_models import devices
from photocraft_models.devices import AUTO, CPU, NoGpu, Placement
from photocraft_models.serving import build, serve
from photocraft_models.tone import Tone

GPU0, GPU1 = Placement("gpu", 0), Placement("gpu", 1)
ALL_ORT = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def test_placement_from_triton_instance_kind():
    assert Placement.from_triton({"model_instance_kind": "GPU", "model_instance_device_id": "1"}) == GPU1
    assert Placement.from_triton({"model_instance_kind": "CPU", "model_instance_device_id": "0"}) == CPU
    assert Placement.from_triton({"model_instance_kind": "MODEL"}) == AUTO
    assert Placement.from_triton({}) == AUTO
    with pytest.raises(ValueError):
        Placement("tpu")


@pytest.mark.parametrize(("placement", "gpus", "expected"), [
    (AUTO, 0, None), (AUTO, 2, 0), (CPU, 2, None), (GPU0, 1, 0), (GPU1, 2, 1)])
def test_choose(placement, gpus, expected):
    assert devices.choose(placement, gpus, "runtime") == expected


@pytest.mark.parametrize(("placement", "gpus"), [(GPU0, 0), (GPU1, 1)])
def test_a_required_gpu_that_is_not_there_is_an_error_naming_kind_gpu(placement, gpus):
    with pytest.raises(NoGpu, match=rf"KIND_GPU \(GPU {placement.device_id}\).*sees {gpus} GPU"):
        devices.choose(placement, gpus, "runtime")


def test_onnx_providers():
    cpu_build = ["AzureExecutionProvider", "CPUExecutionProvider"]
    assert devices.onnx_providers(AUTO, cpu_build, gpus=1) == ["CPUExecutionProvider"]
    assert devices.onnx_providers(AUTO, ALL_ORT, gpus=0) == ["CPUExecutionProvider"]
    assert devices.onnx_providers(CPU, ALL_ORT, gpus=1) == ["CPUExecutionProvider"]
    assert devices.onnx_providers(GPU1, ALL_ORT, gpus=2) == [
        ("TensorrtExecutionProvider", {"device_id": "1"}), ("CUDAExecutionProvider", {"device_id": "1"}),
        "CPUExecutionProvider"]
    assert devices.onnx_providers(AUTO, ["CUDAExecutionProvider", "CPUExecutionProvider"], gpus=1)[0] == \
        ("CUDAExecutionProvider", {"device_id": "0"})
    with pytest.raises(NoGpu, match="onnxruntime-gpu"):
        devices.onnx_providers(GPU0, cpu_build, gpus=1)


class Session:
    def __init__(self, providers: list[str], options: dict | None = None) -> None:
        self.providers, self.options = providers, options or {}

    def get_providers(self) -> list[str]:
        return self.providers

    def get_provider_options(self) -> dict:
        return self.options


def test_a_session_that_dropped_its_gpu_providers_fails_a_gpu_placement(monkeypatch):
    monkeypatch.setattr(devices, "cuda_devices", lambda: ["Test GPU"])
    with pytest.raises(NoGpu, match="dropped the GPU providers"):
        devices.onnx_session_device(GPU0, Session(["CPUExecutionProvider"]))
    assert devices.onnx_session_device(AUTO, Session(["CPUExecutionProvider"])) == "cpu"
    session = Session(["CUDAExecutionProvider", "CPUExecutionProvider"], {"CUDAExecutionProvider": {"device_id": "0"}})
    assert devices.onnx_session_device(GPU0, session) == "cuda:0 (Test GPU) via CUDAExecutionProvider"


def test_ncnn_uses_nvidia_vulkan_devices_only():
    assert devices.ncnn_gpuid(AUTO, 0) == -1
    assert devices.ncnn_gpuid(AUTO, 1) == 0
    assert devices.ncnn_gpuid(CPU, 1) == -1
    assert devices.ncnn_gpuid(GPU1, 2) == 1
    with pytest.raises(NoGpu, match="ncnn"):
        devices.ncnn_gpuid(GPU0, 0)


def _icd_dir(tmp_path: Path, *names: str) -> Path:
    directory = tmp_path / "icd.d"
    directory.mkdir()
    for name in names:
        (directory / name).write_text("{}")
    return directory


def test_lavapipe_alone_is_no_gpu_and_ncnn_is_not_even_asked(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "VULKAN_ICD_DIRS", (_icd_dir(tmp_path, "lvp_icd.x86_64.json"),))
    monkeypatch.setenv("VK_DRIVER_FILES", str(tmp_path / "icd.d" / "lvp_icd.x86_64.json"))
    monkeypatch.setenv("VK_ICD_FILENAMES", "")

    def count() -> int:
        raise AssertionError("ncnn must not enumerate Vulkan devices without NVIDIA's driver")

    assert devices.ncnn_device(AUTO, count) == (-1, "cpu")
    with pytest.raises(NoGpu):
        devices.ncnn_device(GPU0, count)


def test_with_nvidia_vulkan_the_loader_sees_only_nvidia(tmp_path, monkeypatch):
    directory = _icd_dir(tmp_path, "lvp_icd.x86_64.json", "nvidia_icd.json")
    monkeypatch.setattr(devices, "VULKAN_ICD_DIRS", (tmp_path / "missing", directory))
    monkeypatch.setattr(devices, "cuda_devices", lambda: ["Test GPU"])
    for variable in ("VK_DRIVER_FILES", "VK_ICD_FILENAMES"):
        monkeypatch.setenv(variable, "")  # set by ncnn_device; restored after the test
    assert devices.ncnn_device(GPU0, lambda: 1) == (0, "vulkan:0 (Test GPU)")
    assert devices.os.environ["VK_DRIVER_FILES"] == str(directory / "nvidia_icd.json")


def test_an_nvidia_manifest_named_in_the_environment_is_used(tmp_path, monkeypatch):
    manifest = tmp_path / "nvidia" / "nvidia_icd.json"
    manifest.parent.mkdir()
    manifest.write_text("{}")
    monkeypatch.setenv("VK_DRIVER_FILES", str(manifest))
    monkeypatch.setenv("VK_ICD_FILENAMES", "")
    assert devices.nvidia_vulkan_icd(()) == manifest
    monkeypatch.setenv("VK_DRIVER_FILES", str(tmp_path / "nvidia" / "missing_nvidia_icd.json"))
    assert devices.nvidia_vulkan_icd(()) is None


def test_torch_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.torch_device(AUTO) == ("cpu", "cpu")
    with pytest.raises(NoGpu, match="torch"):
        devices.torch_device(GPU0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"Test GPU {i}")
    assert devices.torch_device(GPU1) == ("cuda:1", "cuda:1 (Test GPU 1)")
    assert devices.torch_device(AUTO) == ("cuda:0", "cuda:0 (Test GPU 0)")
    assert devices.torch_device(CPU) == ("cpu", "cpu")


def test_oidn_without_a_cuda_driver_runs_on_the_cpu_or_refuses_a_gpu(monkeypatch):
    monkeypatch.setattr(devices, "cuda_devices", lambda: [])
    assert devices.oidn_device(AUTO) == ("cpu", "cpu")
    with pytest.raises(NoGpu, match="OIDN"):
        devices.oidn_device(GPU0)


def test_on_gpu():
    assert devices.on_gpu("cuda:0 (NVIDIA H200)") and devices.on_gpu("vulkan:0 (NVIDIA H200)")
    assert not devices.on_gpu("cpu")


class CpuDespiteAsking:
    """A model with GPU code that ends up on the CPU (a bug the serving glue must catch)."""

    runtime = "torch"

    def __init__(self, version_dir, parameters, placement) -> None:
        self.device = "cpu"


def test_build_refuses_kind_gpu_for_cpu_only_models_and_for_silent_fallbacks(tmp_path):
    with pytest.raises(NoGpu, match="tone: the config says KIND_GPU, but Tone runs on the CPU only"):
        build(Tone, tmp_path, {}, GPU0, "tone")
    with pytest.raises(NoGpu, match="the model runs on cpu"):
        build(CpuDespiteAsking, tmp_path, {}, GPU0, "fake")
    assert build(CpuDespiteAsking, tmp_path, {}, CPU, "fake").device == "cpu"


def _args(tmp_path: Path, name: str, kind: str) -> dict:
    (tmp_path / "1").mkdir(exist_ok=True)
    return {"model_config": json.dumps({"name": name, "parameters": {}}), "model_repository": str(tmp_path),
            "model_version": "1", "model_name": name, "model_instance_kind": kind, "model_instance_device_id": "0"}


def test_a_kind_gpu_model_fails_to_load_and_a_kind_cpu_one_logs_its_device(tmp_path, monkeypatch):
    triton_stand_in.install(monkeypatch)
    model = serve("filter", Tone)()
    with pytest.raises(NoGpu):
        model.initialize(_args(tmp_path, "tone", "GPU"))
    model.initialize(_args(tmp_path, "tone", "CPU"))
    assert triton_stand_in.Logger.lines == ["tone: running on cpu"]
