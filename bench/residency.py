"""Residency benchmark: our LRU against load-per-request and no eviction, in one run.

    make bench-residency          (writes bench/results/residency.md)

Six real models on a Triton instance of its own (started here from
infra/bin/triton on ports 8300-8302), a budget that holds only three of them
(the three largest measured footprints of models/registry.toml), and a
workload of requests whose model follows a Zipf distribution (s = 1.1, seed
fixed): each request takes the model (loading it if its policy says so) and
runs one real inference. Policies, one after the other on the same requests:

- LRU: photocraft_inference.residency, as gpu-inference runs it;
- load per request: load, infer, unload, every time;
- no eviction: every model is loaded when first asked for, while the budget
  lasts; once memory has run out, requests for models that no longer fit fail.

Reported: hit ratio (requests whose model was already loaded), latency p50
and p99 of the requests served (ms, load time included), failures, loads.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import tomllib
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import redis.asyncio
import tritonclient.grpc.aio as grpcclient
from machine import cpu_model  # bench/machine.py: scripts run from bench/

from photocraft_inference.residency import Residency

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "results" / "residency.md"
MODELS = ["u2netp", "retouch", "analyze", "selfie", "inpaint", "tone"]
REQUESTS = 100


def workload(seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, len(MODELS) + 1, dtype=float)
    weights = ranks ** -1.1
    popularity = rng.permutation(MODELS)  # which model is most popular is chance, not the list order
    return list(rng.choice(popularity, size=REQUESTS, p=weights / weights.sum()))


def request_for(model: str, config: dict) -> list:
    inputs = []
    for spec in config["input"]:
        if spec["data_type"] == "TYPE_STRING":
            tensor = grpcclient.InferInput(spec["name"], [1, 1], "BYTES")
            tensor.set_data_from_numpy(np.array([[json.dumps({}).encode()]], dtype=np.object_))
        else:
            side = [int(d) if int(d) > 0 else 128 for d in spec["dims"]]
            tensor = grpcclient.InferInput(spec["name"], [1, *side], "UINT8")
            tensor.set_data_from_numpy(np.random.default_rng(0).integers(0, 255, (1, *side), dtype=np.uint8))
        inputs.append(tensor)
    return inputs


class Policy:
    """Takes a model for one request; counts hits, loads and failures."""

    def __init__(self, client: grpcclient.InferenceServerClient, footprints: dict[str, int], budget: int) -> None:
        self.client, self.footprints, self.budget = client, footprints, budget
        self.hits = self.loads = 0

    async def load(self, model: str) -> None:
        self.loads += 1
        await self.client.load_model(model)


class Lru(Policy):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.residency = Residency(
            redis.asyncio.Redis(), f"bench-{uuid.uuid4().hex[:8]}", self.budget, self.footprints,
            default_footprint=2**30, pinned=set(), idle_ttl_s=600, load=self.load,
            unload=self.client.unload_model, loaded_now=self.nothing)

    @staticmethod
    async def nothing() -> set[str]:  # no sweeps during the benchmark
        return set()

    @asynccontextmanager
    async def take(self, model: str):
        self.hits += await self.residency.resident(model)
        async with self.residency.use(model):
            yield


class LoadPerRequest(Policy):
    @asynccontextmanager
    async def take(self, model: str):
        await self.load(model)
        try:
            yield
        finally:
            await self.client.unload_model(model)


class NoEviction(Policy):
    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.loaded: set[str] = set()

    @asynccontextmanager
    async def take(self, model: str):
        if model in self.loaded:
            self.hits += 1
        elif sum(self.footprints[m] for m in self.loaded) + self.footprints[model] > self.budget:
            raise MemoryError(f"{model} does not fit: memory has run out")
        else:
            await self.load(model)
            self.loaded.add(model)
        yield


async def run(policy: Policy, requests: list[str], configs: dict[str, dict]) -> dict:
    latencies, failures = [], 0
    started = time.monotonic()
    for model in requests:
        begin = time.monotonic()
        try:
            async with policy.take(model):
                await policy.client.infer(model, request_for(model, configs[model]))
            latencies.append((time.monotonic() - begin) * 1000)
        except MemoryError:
            failures += 1
    return {"hit ratio": policy.hits / len(requests), "p50 ms": float(np.percentile(latencies, 50)),
            "p99 ms": float(np.percentile(latencies, 99)), "failed": failures, "loads": policy.loads,
            "seconds": time.monotonic() - started}


async def unload_all(client: grpcclient.InferenceServerClient) -> None:
    for model in MODELS:
        await client.unload_model(model)
    await asyncio.sleep(2)


async def main_async() -> None:
    with open(ROOT / "models" / "registry.toml", "rb") as f:
        registry = tomllib.load(f)["models"]
    footprints = {m: registry[m]["memory_bytes"] for m in MODELS}
    budget = sum(sorted(footprints.values())[-3:])
    requests = workload()
    client = grpcclient.InferenceServerClient("127.0.0.1:8301")
    configs = {}
    for model in MODELS:  # configs, and the model files warm in the page cache for every policy
        await client.load_model(model)
        configs[model] = (await client.get_model_config(model, as_json=True))["config"]
    results = {}
    for name, policy in (("LRU (ours)", Lru), ("load per request", LoadPerRequest), ("no eviction", NoEviction)):
        await unload_all(client)
        results[name] = await run(policy(client, footprints, budget), requests, configs)
        print(name, {k: round(v, 3) for k, v in results[name].items()}, flush=True)
    await client.close()
    write_report(results, requests, footprints, budget)


def write_report(results: dict, requests: list[str], footprints: dict[str, int], budget: int) -> None:
    counts = {m: requests.count(m) for m in sorted(MODELS, key=requests.count, reverse=True)}
    cpu = cpu_model()
    lines = [
        "# Residency: LRU against load-per-request and no eviction", "",
        f"Produced by `make bench-residency` (bench/residency.py) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{cpu}, CPU only. One Triton instance, {len(MODELS)} models, a budget of {budget / 2**20:.0f} MiB that "
        "holds the three largest (footprints measured, models/registry.toml); "
        f"{len(requests)} requests, one at a time, models drawn from a Zipf distribution (s = 1.1):", "",
        "| model | requests | footprint MiB |", "|---|---|---|",
        *[f"| {m} | {n} | {footprints[m] / 2**20:.0f} |" for m, n in counts.items()], "",
        "| policy | hit ratio | p50 ms | p99 ms | failed requests | loads | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['hit ratio']:.2f} | {r['p50 ms']:.0f} | {r['p99 ms']:.0f} | {r['failed']} | "
                     f"{r['loads']} | {r['seconds']:.0f} |")
    lru, fresh = results["LRU (ours)"], results["load per request"]
    lines += ["", f"LRU serves every request with a median latency of {lru['p50 ms']:.0f} ms, against "
              f"{fresh['p50 ms']:.0f} ms when every request loads its model ({fresh['p50 ms'] / lru['p50 ms']:.0f}x "
              f"lower), in {lru['seconds'] / fresh['seconds']:.0%} of the wall time; its p99 is a load. Without "
              f"eviction, the models asked for after memory ran out are never served "
              f"({results['no eviction']['failed']} requests failed here); p50 and p99 of that row are of the "
              "requests it did serve.", ""]
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text("\n".join(lines))
    print(f"report written to {REPORT}")


def main() -> None:
    triton = subprocess.Popen([ROOT / "infra" / "bin" / "triton", "8300"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        for _ in range(240):
            try:
                if httpx.get("http://127.0.0.1:8300/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        asyncio.run(main_async())
    finally:
        triton.terminate()
        triton.wait(timeout=60)


if __name__ == "__main__":
    main()
