"""The model registry, the model repository, the recipes and the docs agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

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
    assert scheme in ("pip", "wheel", "url", "hf", "none")
    assert bool(entry["files"]) == (scheme != "none")
    for file in entry["files"]:
        assert scheme == "hf" or re.fullmatch(r"[0-9a-f]{64}", file["sha256"]), f"{name}: unpinned weights"


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
