"""The model registry, the model repository, the recipes and the docs agree; the GPU variant of
the model repository follows the registry."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from photocraft_common.operations import MODELS, OPERATIONS

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = tomllib.loads((ROOT / "models" / "registry.toml").read_text())["models"]
DOCS = (ROOT / "docs" / "models.md").read_text()


def test_every_recipe_model_is_registered_and_every_registered_model_is_used():
    assert set(REGISTRY) == set(MODELS)
    used = {op for entry in REGISTRY.values() for op in entry["operations"]}
    assert used == set(OPERATIONS)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_registry_entry_is_complete(name):
    entry = REGISTRY[name]
    for key in ("kind", "description", "licence", "source", "operations", "inputs", "outputs", "memory_bytes"):
        assert entry.get(key) not in (None, "", []), f"{name}: {key} missing"
    scheme = entry["source"].split(":", 1)[0]
    assert scheme in ("pip", "wheel", "url", "hf", "repo", "none")
    assert bool(entry["files"]) == (scheme != "none")
    for file in entry["files"]:
        assert file.get("source", "repo:").startswith("repo:"), f"{name}: a file's own source is repo: only"
        assert scheme == "hf" or re.fullmatch(r"[0-9a-f]{64}", file["sha256"]), f"{name}: unpinned weights"
        if "repo" in (scheme, file.get("source", "").split(":", 1)[0]):
            path = ROOT / "models" / file["path"]
            assert path.is_file() and path.stat().st_size == file["size_bytes"], f"{name}: {path} not committed"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_model_folder_matches_its_registry_kind(name):
    folder = ROOT / "models" / "repository" / name
    config = (folder / "config.pbtxt").read_text()
    assert f'name: "{name}"' in config
    kind = re.search(r'"photocraft.kind" value \{ string_value: "(\w+)" \}', config).group(1)
    assert kind == REGISTRY[name]["kind"]
    assert f'serve("{kind}"' in (folder / "1" / "model.py").read_text()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_docs_give_every_models_licence_and_source(name):
    row = next((line for line in DOCS.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row, f"docs/models.md has no row for {name}"
    assert REGISTRY[name]["licence"] in row and f"`{REGISTRY[name]['source']}`" in row


# GPU fields and the device-specific model configs (models/weights.py configs).

def _weights_tool():
    spec = importlib.util.spec_from_file_location("weights_tool", ROOT / "models" / "weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WEIGHTS_TOOL = _weights_tool()
RAW = (ROOT / "models" / "registry.toml").read_text()


def _config(name: str, device: str) -> model_config_pb2.ModelConfig:
    """The config ``weights.py configs`` writes, parsed as Triton's ModelConfig (unknown fields fail)."""
    return text_format.Parse(WEIGHTS_TOOL.config_for(name, REGISTRY[name], device), model_config_pb2.ModelConfig())


def _line(name: str, key: str) -> str:
    section = RAW.split(f"[models.{name}]\n", 1)[1].split("\n[models.", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(f"{key} ="))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_gpu_fields_are_recorded_and_never_guessed(name):
    entry = REGISTRY[name]
    assert isinstance(entry["gpu"], bool) and isinstance(entry["gpu_memory_bytes"], int)
    assert entry["gpu_memory_bytes"] >= 0
    if not entry["gpu"]:
        assert entry["gpu_memory_bytes"] == 0, f"{name} runs on the CPU: it takes no GPU memory"
    elif entry["gpu_memory_bytes"] == 0:
        assert "unmeasured" in _line(name, "gpu_memory_bytes"), f"{name}: a 0 GPU footprint must say unmeasured"


def _has_gpu_code(module: str, cls: str) -> bool:
    """Whether ``cls`` of photocraft_models.<module> (or a base class in that module) sets ``runtime``."""
    tree = ast.parse((ROOT / "models" / "photocraft_models" / f"{module}.py").read_text())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    node = classes[cls]
    if any(isinstance(s, ast.Assign) and any(getattr(t, "id", None) == "runtime" for t in s.targets)
           for s in node.body):
        return True
    return any(isinstance(b, ast.Name) and b.id in classes and _has_gpu_code(module, b.id) for b in node.bases)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_gpu_flag_matches_the_models_code(name):
    source = (ROOT / "models" / "repository" / name / "1" / "model.py").read_text()
    module, cls = re.search(r"from photocraft_models\.(\w+) import (\w+)\n(?:.*\n)*.*serve\(\"\w+\", \2\)",
                            source).groups()
    assert _has_gpu_code(module, cls) == REGISTRY[name]["gpu"]


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_cpu_config_is_the_source_and_gpu_config_gives_gpu_models_gpu_instances(name):
    source = (ROOT / "models" / "repository" / name / "config.pbtxt").read_text()
    assert WEIGHTS_TOOL.config_for(name, REGISTRY[name], "cpu") == source
    cpu, gpu = _config(name, "cpu"), _config(name, "gpu")
    assert [g.kind for g in cpu.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    kind = "KIND_GPU" if REGISTRY[name]["gpu"] else "KIND_CPU"
    assert [g.kind for g in gpu.instance_group] == [model_config_pb2.ModelInstanceGroup.Kind.Value(kind)]
    # same tensors for clients, whichever device serves them
    assert gpu.name == cpu.name == name and gpu.max_batch_size == cpu.max_batch_size
    assert list(gpu.input) == list(cpu.input) and list(gpu.output) == list(cpu.output)
    assert gpu.parameters["photocraft.kind"] == cpu.parameters["photocraft.kind"]


def test_u2netp_on_gpu_runs_the_serving_graph_with_tensorrt_fp16():
    gpu = _config("u2netp", "gpu")
    assert gpu.backend == "onnxruntime" and gpu.default_model_filename == "model.serving.onnx"
    assert "model.serving.onnx" in REGISTRY["u2netp"]["derived"]
    (accelerator,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    expected = {"max_workspace_size_bytes", "trt_engine_cache_enable", "trt_engine_cache_path"}
    assert expected <= set(accelerator.parameters)
    assert sorted(w.batch_size for w in gpu.model_warmup) == [1, gpu.max_batch_size]


def test_configs_command_writes_every_model_deterministically(tmp_path):
    for device in ("cpu", "gpu"):
        for run in ("a", "b"):
            WEIGHTS_TOOL.configs(argparse.Namespace(device=device, out=tmp_path / device / run))
        first, second = (sorted((tmp_path / device / run).iterdir()) for run in ("a", "b"))
        assert [p.name for p in first] == [f"{name}.pbtxt" for name in sorted(REGISTRY)]
        assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
        assert not any("photocraft.weights" in p.read_text() for p in first)


def test_a_config_without_the_instance_group_line_cannot_be_made_gpu(tmp_path, monkeypatch):
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.pbtxt").write_text('name: "odd"\ninstance_group [ { kind: KIND_CPU, count: 2 } ]\n')
    monkeypatch.setattr(WEIGHTS_TOOL, "SOURCES", tmp_path)
    with pytest.raises(ValueError, match="exactly one"):
        WEIGHTS_TOOL.config_for("odd", {"gpu": True}, "gpu")
    assert "KIND_CPU" in WEIGHTS_TOOL.config_for("odd", {"gpu": False}, "gpu")
    with pytest.raises(ValueError, match="device"):
        WEIGHTS_TOOL.config_for("odd", {}, "tpu")
