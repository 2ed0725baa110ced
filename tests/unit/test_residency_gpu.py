"""What residency counts on GPU nodes: footprints from the model registry and the budget."""

from __future__ import annotations

import logging
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from photocraft_inference.residency import budget, footprints
from photocraft_inference.settings import InferenceSettings, ResidencySettings

REGISTRY_PATH = Path(__file__).resolve().parents[2] / "models" / "registry.toml"
REGISTRY = tomllib.loads(REGISTRY_PATH.read_text())["models"]
GiB = 2**30
GPU = ResidencySettings(device="gpu", unmeasured_gpu_footprint_bytes=5 * GiB)


def test_cpu_footprints_are_the_measured_host_memory():
    counted = footprints(REGISTRY_PATH, ResidencySettings())
    assert counted == {n: e["memory_bytes"] for n, e in REGISTRY.items() if e["memory_bytes"]}
    assert "sd_turbo" not in counted  # unmeasured: the Residency's default_footprint applies


def test_gpu_footprints_count_gpu_memory_and_warn_once_per_unmeasured_model(caplog):
    with caplog.at_level(logging.WARNING, "photocraft.inference.residency"):
        counted = footprints(REGISTRY_PATH, GPU)
    assert set(counted) == set(REGISTRY)
    for name, entry in REGISTRY.items():
        if not entry["gpu"]:
            assert counted[name] == 0, f"{name} runs on the node's CPU"
        else:
            assert counted[name] == (entry["gpu_memory_bytes"] or 5 * GiB)
    unmeasured = sorted(n for n, e in REGISTRY.items() if e["gpu"] and not e["gpu_memory_bytes"])
    warned = sorted(r.getMessage().split(":")[0] for r in caplog.records)
    assert warned == unmeasured and all("unmeasured" in r.getMessage() for r in caplog.records)


def test_a_measured_gpu_footprint_is_used_as_is(caplog):
    registry = {"measured": {"gpu": True, "gpu_memory_bytes": 123_456_789, "memory_bytes": 1},
                "cpu_only": {"gpu": False, "gpu_memory_bytes": 0, "memory_bytes": 2}}
    with caplog.at_level(logging.WARNING, "photocraft.inference.residency"):
        assert footprints(registry, GPU) == {"measured": 123_456_789, "cpu_only": 0}
    assert not caplog.records


@pytest.mark.parametrize(("settings", "gpu_budget", "expected"), [
    (ResidencySettings(), None, 6 * GiB),
    (ResidencySettings(), 72 * GiB, 6 * GiB),  # CPU footprints never count against GPU memory
    (ResidencySettings(budget_bytes=3 * GiB), None, 3 * GiB),
    (ResidencySettings(device="gpu"), 72 * GiB, 72 * GiB),
    (ResidencySettings(device="gpu", budget_bytes=40 * GiB), 72 * GiB, 40 * GiB),
])
def test_budget(settings, gpu_budget, expected):
    assert budget(settings, gpu_budget) == expected


def test_a_gpu_budget_without_a_gpu_is_an_error_not_a_cpu_budget():
    with pytest.raises(ValueError, match="no GPU memory"):
        budget(ResidencySettings(device="gpu"), None)


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("PHOTOCRAFT_RESIDENCY__DEVICE", "gpu")
    monkeypatch.setenv("PHOTOCRAFT_RESIDENCY__UNMEASURED_GPU_FOOTPRINT_BYTES", str(8 * GiB))
    residency = InferenceSettings().residency
    assert residency.device == "gpu" and residency.unmeasured_gpu_footprint_bytes == 8 * GiB
    monkeypatch.setenv("PHOTOCRAFT_RESIDENCY__DEVICE", "tpu")
    with pytest.raises(ValidationError):
        InferenceSettings()
