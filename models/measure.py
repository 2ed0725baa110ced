"""Measure the memory each model takes once loaded in Triton; optionally write it to the registry.

    python models/measure.py [--write] [NAME ...]     (Triton must run: make up)

For each model in var/model-repository: load it through Triton's repository
API, run one inference on a 512x512 photo (generators: none), read the peak
resident memory (VmHWM) of its python-backend stub process, unload it. That
peak is the ``memory_bytes`` of models/registry.toml: what gpu-inference
budgets for the model. CPU figures; on GPU nodes the device memory differs.
"""

from __future__ import annotations

import argparse
import json
import re
import time
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


def measure(client: httpx.Client, name: str) -> int:
    client.post(f"{TRITON}/v2/repository/models/{name}/unload")
    time.sleep(1)
    client.post(f"{TRITON}/v2/repository/models/{name}/load").raise_for_status()
    try:
        config = client.get(f"{TRITON}/v2/models/{name}/config").json()
        kind = config["parameters"]["photocraft.kind"]["string_value"]
        if kind != "generator":
            infer_once(client, name, config)
        return peak_resident_bytes(stub_pid(name))
    finally:
        client.post(f"{TRITON}/v2/repository/models/{name}/unload")


def write(measured: dict[str, int]) -> None:
    path = MODELS / "registry.toml"
    text = path.read_text()
    for name, value in measured.items():
        text = re.sub(rf"(\[models\.{name}\]\n(?:(?!\[models\.).*\n)*?memory_bytes = )\d+",
                      rf"\g<1>{value}", text)
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="models to measure (default: every installed one)")
    parser.add_argument("--write", action="store_true", help="record the figures in models/registry.toml")
    args = parser.parse_args()
    names = args.names or sorted(p.name for p in REPOSITORY.iterdir() if p.is_dir())
    measured = {}
    with httpx.Client(timeout=600) as client:
        for name in names:
            measured[name] = measure(client, name)
            print(f"{name:<18} {measured[name] / 2**20:8.0f} MiB")
    if args.write:
        write(measured)
        print(json.dumps({"written to": str(MODELS / "registry.toml")}))


if __name__ == "__main__":
    main()
