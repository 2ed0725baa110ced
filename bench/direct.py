"""An operation's models called directly, in one process: the speed benchmark's yardstick for our multi-stage jobs.

    .venv-triton/bin/python bench/direct.py PLAN.json

Run by bench/speed.py in the Triton model environment. PLAN.json is ``{"stages": [...], "photos":
[path, ...], "out": folder}``, each stage ``{"name", "models", "params", "decided_by", "optional"}`` as
the operation's recipe has it (photocraft_common.operations). Each model is the class its
models/repository/<model>/1/model.py serves, built once from var/model-repository/<model>/1 with its
config.pbtxt parameters, as Triton's python backend builds it; a stage runs on the first of its
models installed there. A stage decided by an analysis runs as the analysis says, with the parameters
it adds. For each photo in turn: the clock starts with its bytes, which are decoded, go through
every stage's model on the pixels, and end as a PNG written to ``out``. Prints one JSON line:
``{"load_seconds": s, "runs": [{"seconds": s, "models_seconds": s, "stages": [names run],
"stage_seconds": {name: s}}, ...]}``.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from photocraft_models.devices import Placement
from photocraft_models.serving import build
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = ROOT / "var" / "model-repository"
PARAMETER = re.compile(r'parameters\s*\{\s*key:\s*"([^"]+)"\s*value\s*\{\s*string_value:\s*"([^"]*)"')


def algorithm_class(model: str) -> tuple[str, type]:
    """The kind and the class ``models/repository/<model>/1/model.py`` serves (read, not run: it
    imports Triton's backend utilities)."""
    tree = ast.parse((REPOSITORY / model / "1" / "model.py").read_text())
    imports = {alias.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               for alias in node.names}
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "serve")
    kind, name = call.args[0].value, call.args[1].id
    return kind, getattr(importlib.import_module(imports[name]), name)


def load(model: str):
    kind, cls = algorithm_class(model)
    parameters = dict(PARAMETER.findall((REPOSITORY / model / "config.pbtxt").read_text()))
    return kind, build(cls, REPOSITORY / model / "1", parameters, Placement("cpu"), model)


def run(stages: list[dict], models: dict, data: bytes) -> tuple[bytes, dict[str, float]]:
    """PNG bytes of the job's result, and the seconds each stage run spent in its model."""
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    decided: dict = {}
    ran: dict[str, float] = {}
    for stage in stages:
        verdict = decided.get(stage["name"], {"run": True}) if stage["decided_by"] else {"run": True}
        model = next((m for m in stage["models"] if m in models), None)
        if not verdict.get("run") or model is None:
            continue
        kind, algorithm = models[model]
        start = time.perf_counter()
        output = algorithm(image, {**stage["params"], **verdict.get("params", {})})
        ran[stage["name"]] = time.perf_counter() - start
        if kind == "analyzer":
            decided = output.get("stages", {})
        else:
            image = output.image
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue(), ran


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    stages, out = plan["stages"], Path(plan["out"])
    missing = [s["name"] for s in stages if not s["optional"]
               and not any((REPOSITORY / m).is_dir() for m in s["models"])]
    if missing:
        sys.exit(f"not installed in {REPOSITORY}: the models of {missing}")
    start = time.perf_counter()
    installed = [[m for m in s["models"] if (REPOSITORY / m).is_dir()] for s in stages]
    models = {names[0]: load(names[0]) for names in installed if names}
    load_seconds = time.perf_counter() - start
    runs = []
    for index, photo in enumerate(plan["photos"]):
        data = Path(photo).read_bytes()
        start = time.perf_counter()
        png, ran = run(stages, models, data)
        seconds = time.perf_counter() - start
        (out / f"direct-{index}.png").write_bytes(png)
        runs.append({"seconds": seconds, "models_seconds": sum(ran.values()), "stages": list(ran),
                     "stage_seconds": ran})
    print(json.dumps({"load_seconds": load_seconds, "runs": runs}))


if __name__ == "__main__":
    main()
