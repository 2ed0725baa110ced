"""Measure the memory each model takes once loaded in Triton; optionally write it to the registry.

    python models/measure.py [--write] [NAME ...]     (Triton must run: make up)
    python models/measure.py --gpu [--write] [NAME ...]
                                  (on a GPU machine, Triton serving the GPU repository:
                                  weights.py install --device gpu)

For each model in var/model-repository: load it through Triton's repository
API, run one inference on a 512x512 photo (generators: none), read the peak
resident memory (VmHWM) of its python-backend stub process, unload it. That
peak is the ``memory_bytes`` of models/registry.toml: what gpu-inference
budgets for the model on CPU nodes.

With ``--gpu``: the GPU memory in use (``nvidia-smi``, whole GPU) after the
load and one inference, less what was in use before the load, for the models
with ``gpu = true``; that is their ``gpu_memory_bytes``, which gpu-inference
budgets on GPU nodes. Nothing else may use the GPU meanwhile.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
import tomllib
from pathlib import Path

import httpx
import numpy as np
from skimage import data

MODELS = Path(__file__).resolve().parent
REPOSITORY = MODELS.parent / "var" / "model-repository"
TRITON = "http://127.0.0.1:8000"


def stub_pid(name: str) -> int:
    """The python-backend stub process serving ``name``."""
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if proc.name.isdigit() and cmdline[0].endswith(b"triton_python_backend_stub") \
                and f"/{name}/1/model.py".encode() in cmdline[1]:
            return int(proc.name)
    raise LookupError(f"no stub process for {name}")


def peak_resident_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024


def infer_once(client: httpx.Client, name: str, config: dict) -> None:
    inputs = []
    for tensor in config["input"]:
        dims = [d if d > 0 else 512 for d in tensor["dims"]]
        if tensor["data_type"] == "TYPE_STRING":
            inputs.append({"name": tensor["name"], "datatype": "BYTES", "shape": [1, 1], "data": ["{}"]})
        else:
            h, w = dims[0], dims[1]
            photo = np.asarray(data.astronaut())[:h, :w] if h <= 512 else np.zeros((h, w, 3), np.uint8)
            inputs.append({"name": tensor["name"], "datatype": "UINT8", "shape": [1, h, w, 3],
                           "data": photo.ravel().tolist()})
    client.post(f"{TRITON}/v2/models/{name}/infer", json={"inputs": inputs}).raise_for_status()


def gpu_used_bytes() -> int:
    """GPU memory in use on the first GPU, from nvidia-smi (MiB resolution)."""
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) * 2**20


def measure(client: httpx.Client, name: str, gpu: bool = False) -> int:
    client.post(f"{TRITON}/v2/repository/models/{name}/unload")
    time.sleep(1)
    before = gpu_used_bytes() if gpu else 0
    client.post(f"{TRITON}/v2/repository/models/{name}/load").raise_for_status()
    try:
        config = client.get(f"{TRITON}/v2/models/{name}/config").json()
        kind = config["parameters"]["photocraft.kind"]["string_value"]
        if kind != "generator":
            infer_once(client, name, config)
        return gpu_used_bytes() - before if gpu else peak_resident_bytes(stub_pid(name))
    finally:
        client.post(f"{TRITON}/v2/repository/models/{name}/unload")


def write(measured: dict[str, int], field: str = "memory_bytes") -> None:
    """Record ``measured`` as ``field`` of each model (a trailing comment on that line goes)."""
    path = MODELS / "registry.toml"
    text = path.read_text()
    for name, value in measured.items():
        text = re.sub(rf"(\[models\.{name}\]\n(?:(?!\[models\.).*\n)*?{field} = )\d+[^\n]*",
                      rf"\g<1>{value}", text)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="models to measure (default: every installed one)")
    parser.add_argument("--write", action="store_true", help="record the figures in models/registry.toml")
    parser.add_argument("--gpu", action="store_true", help="GPU memory of the gpu = true models (gpu_memory_bytes)")
    args = parser.parse_args()
    names = args.names or sorted(p.name for p in REPOSITORY.iterdir() if p.is_dir())
    if args.gpu:
        with open(MODELS / "registry.toml", "rb") as f:
            on_gpu = {n for n, e in tomllib.load(f)["models"].items() if e.get("gpu")}
        names = [n for n in names if n in on_gpu]
    measured = {}
    with httpx.Client(timeout=600) as client:
        for name in names:
            measured[name] = measure(client, name, args.gpu)
            print(f"{name:<18} {measured[name] / 2**20:8.0f} MiB{' GPU' if args.gpu else ''}")
    if args.write:
        write(measured, "gpu_memory_bytes" if args.gpu else "memory_bytes")
        print(json.dumps({"written to": str(MODELS / "registry.toml")}))


if __name__ == "__main__":
    main()
