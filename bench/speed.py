"""Speed benchmark: remove-background through the platform against rembg on the same machine, in one run.

    make bench                  (writes bench/results/speed.md and speed_*.png; about 15 minutes)
    make bench COLD=1           (also restarts the platform: cold start, tracing on against off)
    .venv/bin/python bench/speed.py --photos 5 --out /tmp/speed     (a short trial)

Both sides run U²-Net-p on the same photos (bench/photos.py: real photos, distinct bytes, 0.25-4 MP):
we serve the INT8 model derived from the registry's weights (models/quantize.py); rembg 2.0.86, in
its own environment (bench/theirs.py), runs the registry's fp32 weights, placed where it looks for
them. Phases, each side's turns interleaved:

1. one at a time, for each photo ours and theirs (who goes first alternates): ours from the upload
   to the gateway to the result downloaded after its ``completed`` event; theirs ``remove()`` on the
   bytes with a warm session, PNG bytes out. Model compute per job from Triton's statistics; the
   masks (alpha > 0.5) compared by IoU; then each job's trace from Jaeger (bench/traces.py), if it
   runs, for the overhead by hop (Jaeger keeps traces in memory: they are read at once);
2. all at once: 50 separate jobs, ``rembg p`` over a folder of the photos, one batch, ``rembg p``
   again: wall time and photos per second;
3. the first job after u2netp was unloaded from Triton (as its idle timeout does);
4. enhance x2 and restore of a 1 MP photo end to end against the same models called directly in one
   process (bench/direct.py), three photos each, ours and directly in turn;
5. with ``--cold`` only: the platform restarted (``make down``, ``make up``) with tracing off, then on,
   twice in turn: throughput of 50 separate jobs after each restart (their second pass: the first warms a
   fresh Kafka up), and the time from ``make up`` returning to the first completed job. It stops the
   shared platform: run it when nobody else uses it.

Every job runs under a tenant of its phase's own, so that no result is reused (the platform reuses a
tenant's identical results). The raw figures go to var/bench/speed.json; the report is written by
bench/speed_report.py.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import statistics
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import ours
import photos as corpus_of
import speed_report
import theirs
import traces
from PIL import Image

from photocraft_common.operations import get_operation, parse_params

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "var" / "bench"
RESULTS = ROOT / "bench" / "results"
PHOTO_1MP = corpus_of.Recipe(100, "astronaut", (0, 0, 512, 512), False, (1000, 1000), 90)
PHOTO_1MP_FLIPPED = corpus_of.Recipe(102, "astronaut", (0, 0, 512, 512), True, (1000, 1000), 90)
WARM_SMALL = corpus_of.Recipe(101, "astronaut", (0, 0, 512, 512), True, (500, 500), 90)
MULTI_STAGE = {"enhance x2": ("enhance", {"scale": 2}), "restore": ("restore", {})}
MULTI_REPEATS = 3  # photos of each multi-stage operation, each run by us and directly
COLD_ROUNDS = 2  # restarts with tracing off, then on, in turn


def alpha_mask(png: bytes) -> np.ndarray:
    """(H, W) bool: the alpha channel of a cut-out above 0.5."""
    image = Image.open(io.BytesIO(png))
    if image.mode != "RGBA":
        raise ValueError(f"a cut-out without alpha ({image.mode})")
    return np.asarray(image.getchannel("A")) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (H, W) bool masks; 1.0 when both are empty."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


async def our_turn(client: ours.Client, photo, out: Path, row: dict) -> None:
    """One job of ``photo`` end to end; its seconds (``ours_s``), Triton's compute for it (``model_s``) and
    its id go in ``row``, its cut-out to ``out``."""
    before = await ours.model_compute_ns("u2netp")
    row["ours_s"], result, row["job_id"] = await client.one(photo.path.read_bytes())
    row["model_s"] = (await ours.model_compute_ns("u2netp") - before) / 1e9
    out.write_bytes(result)


async def one_at_a_time(photos: list, remover: theirs.Remover) -> list[dict]:
    """Phase 1: one row per photo, seconds each side took, the model's share of ours, the masks' IoU."""
    out = WORK / "out"
    for side in ("ours", "rembg"):
        shutil.rmtree(out / side, ignore_errors=True)
        (out / side).mkdir(parents=True)
    rows = []
    async with ours.Client("one") as client:
        await client.one(corpus_of.render(WARM_SMALL))  # connections and the model warm
        for index, photo in enumerate(photos):
            row = {"photo": photo.path.name, "megapixels": photo.recipe.megapixels, "band": photo.band}
            if index % 2:
                row["rembg_s"] = await asyncio.to_thread(remover.remove, photo.path, out / "rembg" / f"{index:02d}.png")
            await our_turn(client, photo, out / "ours" / f"{index:02d}.png", row)
            if not index % 2:
                row["rembg_s"] = await asyncio.to_thread(remover.remove, photo.path, out / "rembg" / f"{index:02d}.png")
            row["stages_started"] = len(client.stages[row["job_id"]])
            rows.append(row)
            print(f"  {photo.path.name}: ours {row['ours_s']:.2f} s (model {row['model_s']:.2f} s), "
                  f"rembg {row['rembg_s']:.2f} s", flush=True)
    for index, row in enumerate(rows):
        row["iou"] = iou(alpha_mask((out / "ours" / f"{index:02d}.png").read_bytes()),
                         alpha_mask((out / "rembg" / f"{index:02d}.png").read_bytes()))
    return rows


async def all_at_once(photos: list, python: Path) -> dict:
    """Phase 2: wall seconds of the photos as separate jobs, as one batch, and of ``rembg p`` (twice)."""
    folder = WORK / "folder"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for photo in photos:
        shutil.copyfile(photo.path, folder / photo.path.name)
    data = [photo.path.read_bytes() for photo in photos]
    result: dict = {"photos": len(photos)}

    async with ours.Client("jobs") as client:
        start = time.perf_counter()
        job_ids = await asyncio.gather(*(client.submit(d) for d in data))
        await asyncio.gather(*(client.result(j) for j in job_ids))
        result["jobs_s"] = time.perf_counter() - start
    print(f"  {len(photos)} separate jobs: {result['jobs_s']:.1f} s", flush=True)
    (WORK / "empty").mkdir(exist_ok=True)
    result["rembg_p_empty_s"] = await asyncio.to_thread(theirs.folder, python, WORK / "empty", WORK / "out" / "rembg-p")
    result["rembg_p_s"] = [await asyncio.to_thread(theirs.folder, python, folder, WORK / "out" / "rembg-p")]
    print(f"  rembg p: {result['rembg_p_s'][-1]:.1f} s", flush=True)
    async with ours.Client("batch") as client:
        start = time.perf_counter()
        job_ids = await client.submit_batch(data)
        await asyncio.gather(*(client.result(j) for j in job_ids))
        result["batch_s"] = time.perf_counter() - start
    print(f"  one batch of {len(photos)}: {result['batch_s']:.1f} s", flush=True)
    result["rembg_p_s"].append(await asyncio.to_thread(theirs.folder, python, folder, WORK / "out" / "rembg-p"))
    print(f"  rembg p: {result['rembg_p_s'][-1]:.1f} s", flush=True)
    made = len(list((WORK / "out" / "rembg-p").glob("*.png")))
    if made != len(photos):
        raise RuntimeError(f"rembg p made {made} cut-outs of {len(photos)} photos")
    return result


async def after_unload() -> dict:
    """Phase 3: seconds of a 1 MP job before u2netp is unloaded and of the first one after."""
    async with ours.Client("unload") as client:
        await client.one(corpus_of.render(WARM_SMALL))
        warm_s, _, _ = await client.one(corpus_of.render(PHOTO_1MP_FLIPPED))
        reconciled_s = await ours.unload("u2netp")
        first_s, _, _ = await client.one(corpus_of.render(PHOTO_1MP))
    print(f"  after unloading u2netp: {first_s:.2f} s (warm: {warm_s:.2f} s)", flush=True)
    return {"first_s": first_s, "warm_s": warm_s, "reconciled_s": reconciled_s}


def stages_of(operation: str, params: dict) -> list[dict]:
    recipe = get_operation(operation).stages(parse_params(operation, json.dumps(params)))
    return [{"name": s.name, "models": list(s.models), "params": dict(s.params), "decided_by": s.decided_by,
             "optional": s.optional} for s in recipe]


async def multi_stage(repeats: int = MULTI_REPEATS) -> dict:
    """Phase 4: enhance x2 and restore of 1 MP, end to end and directly (bench/direct.py), in seconds:
    ``repeats`` photos of the same scene in distinct bytes (JPEG quality 90, 91, ...), each run by us, then
    directly, in turn; the figures are the medians of the photos' runs, each run kept under ``runs``."""
    out = WORK / "out" / "direct"
    out.mkdir(parents=True, exist_ok=True)
    warm = WORK / WARM_SMALL.name
    warm.write_bytes(corpus_of.render(WARM_SMALL))
    rows = {}
    async with ours.Client("multi") as client:
        for name, (operation, params) in MULTI_STAGE.items():
            await client.one(warm.read_bytes(), operation, params)  # its models loaded
            runs = []
            for index in range(repeats):
                photo = WORK / f"multi-{operation}-{index}.jpg"
                photo.write_bytes(corpus_of.render(replace(PHOTO_1MP, quality=PHOTO_1MP.quality + index)))
                ours_s, _, job_id = await client.one(photo.read_bytes(), operation, params)
                direct = await asyncio.to_thread(_direct, operation, params, [warm, photo], out)
                runs.append({"ours_s": ours_s, "ours_stages": client.stages[job_id], **direct["runs"][1],
                             "load_s": direct["load_seconds"]})
                print(f"  {name} #{index + 1}: ours {ours_s:.1f} s, direct {direct['runs'][1]['seconds']:.1f} s",
                      flush=True)
            middle = {key: statistics.median(run[key] for run in runs)
                      for key in ("ours_s", "seconds", "models_seconds", "load_s")}
            rows[name] = {**runs[0], **middle, "runs": runs}
    return rows


def _direct(operation: str, params: dict, photos: list[Path], out: Path) -> dict:
    """bench/direct.py's figures for ``photos`` (the first warms the models up)."""
    plan = WORK / f"direct-{operation}.json"
    plan.write_text(json.dumps({"stages": stages_of(operation, params), "photos": [str(p) for p in photos],
                                "out": str(out)}))
    done = subprocess.run([ROOT / ".venv-triton" / "bin" / "python", ROOT / "bench" / "direct.py", plan],
                          check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def trace_hops(rows: list[dict]) -> dict:
    """``{"hops": {job id: traces.hops(...)}, "missing": [job ids]}``, or ``{"error": why}`` without Jaeger."""
    if not traces.reachable():
        return {"error": f"no traces: Jaeger's query API does not answer at {traces.JAEGER}"}
    time.sleep(6)  # the services export spans in batches every 5 s
    found, missing = {}, []
    for row in rows:
        trace = traces.fetch(row["job_id"])
        if trace is None:
            missing.append(row["job_id"])
        else:
            found[row["job_id"]] = traces.hops(trace)
    return {"hops": found, "missing": missing}


def make(*targets: str, env: dict | None = None) -> float:
    """Seconds ``make targets`` took; CalledProcessError if it failed."""
    start = time.perf_counter()
    subprocess.run(["make", *targets], cwd=ROOT, check=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


async def cold(photos: list, rounds: int = COLD_ROUNDS) -> dict:
    """Restarts the platform ``2 * rounds`` times, tracing off, then on (the default), in turn: throughput of
    separate jobs after each restart, on the second pass of the photos (each pass a tenant of its own, so
    that nothing is reused; ``throughputs_off``, ``throughputs_on``; ``throughput_off``/``_on``: their means),
    and ``make up``'s time and the first job's after the first restart each way."""
    data = [photo.path.read_bytes() for photo in photos]
    result: dict = {"throughputs_off": [], "throughputs_on": []}
    for turn in range(rounds):
        for label, enabled in (("off", "false"), ("on", "true")):
            keys = ours.new_tenant(f"cold-{label}"), ours.new_tenant(f"warm-{label}")
            make("down")
            up_s = make("up", env={"PHOTOCRAFT_TRACING__ENABLED": enabled})
            up = time.perf_counter()
            async with ours.Client(f"cold-{label}", keys[0]) as client:
                await client.one(corpus_of.render(PHOTO_1MP))
                first_s = time.perf_counter() - up  # from make up returning
            for key in keys:  # the first pass warms the platform up (a fresh Kafka, JVM, caches): not counted
                async with ours.Client(f"cold-{label}", key) as client:
                    start = time.perf_counter()
                    job_ids = await asyncio.gather(*(client.submit(d) for d in data))
                    await asyncio.gather(*(client.result(j) for j in job_ids))
                    throughput = len(data) / (time.perf_counter() - start)
            if turn == 0:
                result[f"up_s_{label}"], result[f"first_job_s_{label}"] = up_s, first_s
            result[f"throughputs_{label}"].append(throughput)
            print(f"  tracing {label}: make up {up_s:.0f} s, first job {first_s:.1f} s, {throughput:.2f} photos/s",
                  flush=True)
    for label in ("off", "on"):
        result[f"throughput_{label}"] = statistics.mean(result[f"throughputs_{label}"])
    return result


async def run(args: argparse.Namespace) -> dict:
    httpx.get(f"{ours.GATEWAY}/readyz", timeout=10).raise_for_status()
    photos = corpus_of.corpus(args.photos)
    python = theirs.ensure_venv()
    theirs.place_weights()
    warm = WORK / WARM_SMALL.name
    warm.write_bytes(corpus_of.render(WARM_SMALL))
    remover = theirs.Remover(python, warm)
    started = time.time()
    results: dict = {"rembg": remover.info, "photos": args.photos, "started": started, "load": [os.getloadavg()[0]]}
    try:
        print("one at a time", flush=True)
        results["one"] = await one_at_a_time(photos, remover)
    finally:
        remover.close()
    results["traces"] = trace_hops(results["one"])  # now: Jaeger keeps them in memory, a restart loses them
    print("all at once", flush=True)
    results["all"] = await all_at_once(photos, python)
    print("first job after an unload", flush=True)
    results["unload"] = await after_unload()
    print("enhance x2 and restore of 1 MP", flush=True)
    results["multi"] = await multi_stage()
    if args.cold:
        print("cold start, tracing off and on (restarts the platform)", flush=True)
        results["cold"] = await cold(photos)
    results["seconds"] = time.time() - started
    results["load"].append(os.getloadavg()[0])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=50, help="photos of the corpus to use (50 for the report)")
    parser.add_argument("--cold", action="store_true", help="also restart the platform (stops it for everyone)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of speed.md and the plots")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from var/bench/speed.json")
    args = parser.parse_args()
    raw = WORK / "speed.json"
    if not args.report_only:
        raw.write_text(json.dumps(asyncio.run(run(args)), indent=1))
    speed_report.write(json.loads(raw.read_text()), args.out)


if __name__ == "__main__":
    main()
