"""Micro-benchmarks of the gpu-inference worker path, each cost measured as it was and as it is now.

    .venv/bin/python bench/worker_path.py [--photos 12] [--append]
        [--only encode,matting,intermediate,hop,triton,resize,tiling,io,deflate]

Writes bench/results/worker_path.md (issue 13, item 3). Needs the local platform (`make up`): the
photos' masks come from Triton's u2netp, the intermediate round trip goes through its S3, the hop
through its Kafka. Photos: the first ``--photos`` of bench/photos.py's corpus (real scikit-image
photos, 0.25-4 MP, every size band in any prefix). Sections:

- encode: a cut-out (RGBA) result as PNG: Pillow at zlib level 6 (before) against the settings
  tried and the one chosen (images.PNG_RESULT); time, size against level 6, pixels read back.
- matting: the guided filter at full size (before) against matting.full_size_alpha (at GUIDE_SIDE);
  time and the IoU of the alpha thresholded at 0.5, and the mean absolute difference in levels.
- resize (tried, not kept): the segmenter's input, Lanczos over the whole photo against Lanczos after
  Pillow's box reduction (``REDUCING_GAP``); time, largest difference, IoU of u2netp's masks.
- tiling: the windows a tiled model (waifu2x) computes, fixed 256-pixel ones (before) against windows
  sized to the image (tiling.centres) of at most 1024 pixels (now); arithmetic, not timed.
- intermediate: a 4 MP stage output written and read by the next stage: encode, S3 put, get, decode.
- hop: publish -> handler of a batch subscriber as gpu-inference has it, on a topic made for the run,
  with FastStream's polling (before) and kafka.poll_without_pause (now); random gaps between messages.
- triton: u2netp's compute_infer from Triton's statistics against the model alone in this machine's
  .venv-triton (same weights, same serving code), one request at a time.
- io: the worker's S3, Redis and Kafka steps around the model, one after another (before) against
  overlapped (now), and an S3 put with and without botocore's CRC32 (bench/worker_io.py).
- deflate: the cut-outs as PNG, libpng's zlib (now) against libdeflate and zlib-ng (bench/worker_io.py).

``--append``: add the sections run to the end of the report, under a line of their own (machine, load),
instead of writing it anew.

Each figure is the median over the photos or messages (p90 and max where a tail matters); the load
average shows how busy the machine was (other processes slow everything alike).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import cv2
import httpx
import imagecodecs
import numpy as np
import tritonclient.grpc as grpcclient
from machine import cpu_model  # bench/machine.py: scripts run from bench/
from photos import corpus  # bench/photos.py: the speed benchmark's photos
from PIL import Image

from photocraft_common.images import PNG_INTERMEDIATE, PNG_RESULT, decode, encode
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import make_client
from photocraft_inference.matting import GUIDE_SIDE, cut_out, full_size_alpha
from photocraft_inference.tiling import centres

ROOT = Path(__file__).resolve().parents[1]
REDUCING_GAP = 3.0  # tried for the segmenter's input resize (section 6), not kept
REPORT = ROOT / "bench" / "results" / "worker_path.md"
TRITON_GRPC, TRITON_HTTP = "127.0.0.1:8001", "http://127.0.0.1:8000"
FILTERS = imagecodecs.PNG.FILTER


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def timed(work, runs: int = 1):
    """(best wall seconds of ``runs``, the last result)."""
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def model_input(rgb: np.ndarray, reducing_gap: float | None = None) -> np.ndarray:
    """The (320, 320, 3) input of u2netp, resized as runners.run_segmenter does (``reducing_gap`` None)."""
    return np.asarray(Image.fromarray(rgb).resize((320, 320), Image.Resampling.LANCZOS, reducing_gap=reducing_gap))


def masks(photos: list[np.ndarray], reducing_gap: float | None = None) -> list[np.ndarray]:
    """u2netp's (320, 320) float32 mask of each photo, from Triton."""
    client = grpcclient.InferenceServerClient(TRITON_GRPC)
    client.load_model("u2netp")
    out = []
    for rgb in photos:
        small = model_input(rgb, reducing_gap)[np.newaxis]
        request = grpcclient.InferInput("IMAGE", list(small.shape), "UINT8")
        request.set_data_from_numpy(small)
        out.append(client.infer("u2netp", [request]).as_numpy("MASK")[0])
    return out


def resize_section(photos: list[np.ndarray], found: list[np.ndarray]) -> list[str]:
    before_t, after_t, diffs, ious = [], [], [], []
    for rgb in photos:
        t0, old = timed(lambda x=rgb: model_input(x), runs=2)
        t1, new = timed(lambda x=rgb: model_input(x, REDUCING_GAP), runs=2)
        before_t.append(t0)
        after_t.append(t1)
        diffs.append(int(np.abs(old.astype(np.int16) - new).max()))
    for old_mask, new_mask in zip(found, masks(photos, REDUCING_GAP), strict=True):
        old_in, new_in = old_mask >= 0.5, new_mask >= 0.5
        ious.append((old_in & new_in).sum() / max((old_in | new_in).sum(), 1))
    return ["## 6. Tried, not kept: the segmenter's input resized faster", "",
            f"Lanczos over the whole photo (as runners.py does) against Lanczos after a box reduction to "
            f"{REDUCING_GAP:g}x the size (Pillow's reducing_gap): median {ms(statistics.median(before_t))} ms -> "
            f"{ms(statistics.median(after_t))} ms; the inputs differ by up to {max(diffs)} levels and u2netp's masks "
            f"(thresholded at 0.5) agree to an IoU of median {statistics.median(ious):.4f}, minimum {min(ious):.4f}: "
            "too little time saved for a mask that can change.", ""]


def pillow_png(pixels: np.ndarray, level: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def encode_section(names: list[str], results: list[np.ndarray]) -> list[str]:
    candidates = {
        "Pillow level 6 (before)": lambda x: pillow_png(x, 6),
        "Pillow level 1": lambda x: pillow_png(x, 1),
        "imagecodecs level 1, Up": lambda x: imagecodecs.png_encode(x, level=1, filter=FILTERS.UP),
        "imagecodecs level 2, Up": lambda x: imagecodecs.png_encode(x, level=2, filter=FILTERS.UP),
        "imagecodecs level 2, Paeth": lambda x: imagecodecs.png_encode(x, level=2, filter=FILTERS.PAETH),
        "imagecodecs level 3, Up (until 2026-12-01)": lambda x: imagecodecs.png_encode(x, level=3, filter=FILTERS.UP),
        "imagecodecs level 3, None/Sub/Up adaptive": lambda x: imagecodecs.png_encode(x, level=3, filter=FILTERS.FAST),
        "imagecodecs level 1, Up, run-length strategy": lambda x: imagecodecs.png_encode(
            x, level=1, filter=FILTERS.UP, strategy=imagecodecs.PNG.STRATEGY.RLE),
        "imagecodecs level 1, Paeth, run-length strategy (chosen)": lambda x: encode(x, "png"),
    }
    assert PNG_RESULT == {"level": 1, "filter": FILTERS.PAETH, "strategy": imagecodecs.PNG.STRATEGY.RLE}, \
        "the table names the chosen setting"
    times = {name: [] for name in candidates}
    ratios = {name: [] for name in candidates}
    identical = {name: True for name in candidates}
    rows = []
    for name, rgba in zip(names, results, strict=True):
        base = None
        row = {}
        for label, work in candidates.items():
            seconds, data = timed(lambda w=work, x=rgba: w(x))
            base = base or len(data)
            times[label].append(seconds / (rgba.shape[0] * rgba.shape[1] / 1e6))
            ratios[label].append(len(data) / base)
            identical[label] &= np.array_equal(np.asarray(Image.open(io.BytesIO(data))), rgba)
            row[label] = (seconds, len(data))
        before, chosen = row["Pillow level 6 (before)"], row["imagecodecs level 1, Paeth, run-length strategy (chosen)"]
        rows.append(f"| {name} | {ms(before[0])} | {ms(chosen[0])} | {before[1] / 1e6:.2f} | "
                    f"{chosen[1] / 1e6:.2f} ({chosen[1] / before[1]:.2f}x) |")
    lines = ["## 1. Result encoding (PNG of the RGBA cut-out)", "",
             "| setting | ms per MP, median | size vs level 6, median | max | pixels read back (Pillow) |",
             "|---|---:|---:|---:|---|"]
    lines += [f"| {label} | {statistics.median(times[label]) * 1000:.0f} | {statistics.median(ratios[label]):.2f}x "
              f"| {max(ratios[label]):.2f}x | {'identical' if identical[label] else 'DIFFERENT'} |"
              for label in candidates]
    lines += ["", "| photo | level 6 ms | chosen ms | level 6 MB | chosen MB |", "|---|---:|---:|---:|---:|", *rows, ""]
    return lines


def guided_before(mask: np.ndarray, guide: np.ndarray) -> np.ndarray:
    """The finish as it was: mask scaled to the photo, then the guided filter at full size."""
    height, width = guide.shape[:2]
    alpha = cv2.resize(mask.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    radius = max(2, round(min(height, width) / 160))
    return np.clip(cv2.ximgproc.guidedFilter(guide.astype(np.float32) / 255.0, alpha, radius, 1e-4), 0.0, 1.0)


def matting_section(names: list[str], photos: list[np.ndarray], found: list[np.ndarray]) -> list[str]:
    rows, ious, before_t, after_t = [], [], [], []
    for name, rgb, mask in zip(names, photos, found, strict=True):
        t0, old = timed(lambda m=mask, x=rgb: guided_before(m, x), runs=2)
        t1, new = timed(lambda m=mask, x=rgb: full_size_alpha(m, x.shape[0], x.shape[1], True, x), runs=2)
        old_8, new_8 = (old * 255 + 0.5).astype(np.uint8), (new * 255 + 0.5).astype(np.uint8)
        union = ((old_8 >= 128) | (new_8 >= 128)).sum()
        iou = ((old_8 >= 128) & (new_8 >= 128)).sum() / max(union, 1)
        mad = np.abs(old_8.astype(np.int16) - new_8).mean()
        ious.append(iou)
        before_t.append(t0)
        after_t.append(t1)
        rows.append(f"| {name} | {ms(t0)} | {ms(t1)} | {iou:.4f} | {mad:.2f} |")
    return ["## 2. Remove-background finish: the guided filter", "",
            f"Before: at full size. Now: on the photo scaled to {GUIDE_SIDE} px a side, the alpha then scaled "
            f"up. Median {ms(statistics.median(before_t))} ms -> {ms(statistics.median(after_t))} ms; IoU of "
            f"the thresholded alpha (0.5) against before: median {statistics.median(ious):.4f}, minimum "
            f"{min(ious):.4f}.", "",
            "| photo | before ms | now ms | IoU | mean abs diff (levels) |", "|---|---:|---:|---:|---:|", *rows, ""]


def intermediate_section(photo: np.ndarray) -> list[str]:
    settings = PlatformSettings()
    client, bucket = make_client(settings.s3), settings.s3.bucket
    key = f"bench/worker-path/{uuid.uuid4().hex}.png"
    stage_output = cv2.resize(photo, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)  # stands in for x2
    ways = {"Pillow level 6 (before)": lambda x: pillow_png(x, 6),
            f"level {PNG_INTERMEDIATE['level']}, no filter (now)": lambda x: encode(x, "png", intermediate=True)}
    lines = ["## 3. Intermediate stage output: written, stored, read back", "",
             f"A {stage_output.shape[1]}x{stage_output.shape[0]} RGB stage output (one stage of enhance x2 of "
             "a 1 MP photo); S3 is the platform's SeaweedFS. Best of 3.", "",
             "| format | MB | encode ms | put ms | get ms | decode ms | total ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    try:
        for label, work in ways.items():
            t_enc, data = timed(lambda w=work: w(stage_output), runs=3)
            t_put, _ = timed(lambda d=data: client.put_object(Bucket=bucket, Key=key, Body=d), runs=3)
            t_get, got = timed(lambda: client.get_object(Bucket=bucket, Key=key)["Body"].read(), runs=3)
            t_dec, back = timed(lambda g=got: decode(g), runs=3)
            assert np.array_equal(back.rgb, stage_output), label
            total = t_enc + t_put + t_get + t_dec
            lines.append(f"| {label} | {len(data) / 1e6:.1f} | {ms(t_enc)} | {ms(t_put)} | {ms(t_get)} | "
                         f"{ms(t_dec)} | {ms(total)} |")
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    return [*lines, ""]


async def hops(patched: bool, count: int, seed: int) -> list[float]:
    """Seconds from publish to handler for ``count`` messages through a gpu-inference-like batch subscriber."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from faststream.kafka.annotations import KafkaMessage

    from photocraft_common.kafka import (
        AckPolicy,
        connection_kwargs,
        make_broker,
        poll_without_pause,
        subscriber_options,
    )

    settings = PlatformSettings().kafka
    topic = f"photocraft.bench.hop.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(**connection_kwargs(settings))
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    broker = make_broker(settings, "bench-worker-path")
    received: asyncio.Queue[float] = asyncio.Queue()

    async def handle(bodies: list[bytes], message: KafkaMessage) -> None:
        now = time.time()
        for record in message.raw_message:
            received.put_nowait(now - float(record.value[1:].decode()))  # b"t<unix s>": not JSON

    subscriber = broker.subscriber(topic, batch=True, max_records=4,
                                   **subscriber_options(settings, f"bench-{topic}", AckPolicy.NACK_ON_ERROR))
    (poll_without_pause(subscriber) if patched else subscriber)(handle)
    rng = np.random.default_rng(seed)
    try:
        await broker.start()
        await broker.publish(f"t{time.time()}".encode(), topic)  # wait for the partition's assignment
        await asyncio.wait_for(received.get(), 60)
        out = []
        for _ in range(count):
            await asyncio.sleep(float(rng.uniform(0.05, 0.45)))
            await broker.publish(f"t{time.time()}".encode(), topic)
            out.append(await asyncio.wait_for(received.get(), 10))
        return out
    finally:
        await broker.stop()
        await admin.delete_topics([topic])
        await admin.close()


def hop_section(count: int) -> list[str]:
    lines = ["## 4. The Kafka hop: publish -> the worker's handler", "",
             f"{count} messages, one at a time, 50-450 ms apart (uniform), through a batch subscriber of 4 "
             "records with subscriber_options, as gpu-inference consumes a model topic.", "",
             "| polling | p50 ms | p90 ms | max ms | over 150 ms |", "|---|---:|---:|---:|---:|"]
    for patched in (False, True):
        values = asyncio.run(hops(patched, count, seed=13))
        label = "poll_without_pause (now)" if patched else "FastStream batch polling (before)"
        slow = sum(v > 0.15 for v in values)
        lines.append(f"| {label} | {ms(statistics.median(values))} | {ms(float(np.percentile(values, 90)))} | "
                     f"{ms(max(values))} | {slow} of {count} |")
    return [*lines, ""]


def triton_stats(model: str) -> tuple[int, int]:
    """(count, ns) of the model's compute_infer on the Triton at TRITON_HTTP."""
    stats = httpx.get(f"{TRITON_HTTP}/v2/models/{model}/stats", timeout=10).json()["model_stats"][0]
    infer = stats["inference_stats"]["compute_infer"]
    return int(infer["count"]), int(infer["ns"])


ALONE = """
import sys, time, numpy as np
from pathlib import Path
from photocraft_models.segmentation import U2Net
model = U2Net(Path(sys.argv[1]), {"precision": "int8"})
x = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
model(x)
times = []
for _ in range(int(sys.argv[2])):
    started = time.perf_counter(); model(x); times.append(time.perf_counter() - started)
print(float(np.median(times)))
"""


def triton_section(runs: int) -> list[str]:
    client = grpcclient.InferenceServerClient(TRITON_GRPC)
    client.load_model("u2netp")
    x = np.random.default_rng(0).integers(0, 256, (1, 320, 320, 3), dtype=np.uint8)
    request = grpcclient.InferInput("IMAGE", list(x.shape), "UINT8")
    request.set_data_from_numpy(x)
    client.infer("u2netp", [request])
    per_request = []
    for _ in range(runs):
        count, ns = triton_stats("u2netp")
        client.infer("u2netp", [request])
        count_after, ns_after = triton_stats("u2netp")
        if count_after == count + 1:  # nobody else's request in between
            per_request.append((ns_after - ns) / 1e9)
    version = ROOT / "var" / "model-repository" / "u2netp" / "1"

    def alone(spin: str) -> float:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "models"), "PHOTOCRAFT_ORT_SPIN": spin}
        command = [str(ROOT / ".venv-triton" / "bin" / "python"), "-c", ALONE, str(version), str(runs)]
        return float(subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout.split()[-1])

    inside = statistics.median(per_request) if per_request else float("nan")
    threads = os.environ.get("PHOTOCRAFT_ORT_THREADS", "0 (onnxruntime's default: one per core)")
    return ["## 5. U²-Net-p INT8 in Triton against alone", "",
            f"{runs} requests one at a time; compute_infer from Triton's statistics ({len(per_request)} requests "
            f"with no other in between), as Triton runs it now (serving code as in this checkout once the model was "
            f"loaded). Alone: U2Net (the serving code) in .venv-triton, intra-op threads {threads}, the thread "
            "pool spinning (onnxruntime's default, before) or not (segmentation.py now).", "",
            "| where | p50 ms |", "|---|---:|",
            f"| Triton compute_infer | {ms(inside)} |", f"| alone, spinning (before) | {ms(alone('1'))} |",
            f"| alone, not spinning (now) | {ms(alone('0'))} |", ""]


def tiling_section() -> list[str]:
    """Pixels a tiled model computes per pixel of the image: fixed 256-pixel windows (before) against
    windows sized by tiling.centres (now), with 256 and with waifu2x's 1024-pixel limit."""
    def work(height: int, width: int, tile: int, overlap: int, fitted: bool) -> tuple[int, float]:
        if max(height, width) <= tile:  # runners.run_filter sends the whole image
            return 1, 1.0
        cores = [centres(side, tile, overlap) if fitted else tile - 2 * overlap for side in (height, width)]
        counts = [math.ceil(side / core) for side, core in zip((height, width), cores, strict=True)]
        return counts[0] * counts[1], counts[0] * counts[1] * (cores[0] + 2 * overlap) * (cores[1] + 2 * overlap) \
            / (height * width)

    rows = []
    for height, width in ((1000, 1000), (1500, 2000), (2000, 3000), (300, 500)):
        cells = [work(height, width, *layout) for layout in ((256, 16, False), (256, 16, True), (1024, 16, True))]
        described = (f"{n} window{'s' * (n > 1)}, {w:.2f}x" for n, w in cells)
        rows.append(f"| {width}x{height} | " + " | ".join(described) + " |")
    return ["## 7. Tiling: what a tiled model computes per pixel of the image", "",
            "waifu2x (photocraft.tile) before: 256-pixel windows overlapping by 16, the last ones mostly mirror. "
            "Now: windows sized to the image (tiling.centres), at most 1024 pixels (models/repository/waifu2x_*). "
            "Measured once on this machine (not by this script), enhance x2 of a 1 MP photo end to end against its "
            "models called in one process (bench/direct.py): 1.53x before, 1.12x now.", "",
            "| image | 256 px windows (before) | 256 px, sized | 1024 px, sized (now) |", "|---|---|---|---|",
            *rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=12)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--only", default="encode,matting,intermediate,hop,triton,resize,tiling,io,deflate")
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--append", action="store_true", help="append the sections run to the report")
    args = parser.parse_args()
    only = set(args.only.split(","))
    started = time.monotonic()
    chosen = corpus(args.photos)
    names = [p.path.stem for p in chosen]
    photos = [decode(p.path.read_bytes()).rgb for p in chosen]
    found = masks(photos) if only & {"encode", "matting", "resize", "deflate"} else []
    sections: list[str] = []
    if "encode" in only:
        results = [cut_out(rgb, mask, {}) for rgb, mask in zip(photos, found, strict=True)]
        sections += encode_section(names, results)
        print("encode done", flush=True)
    if "matting" in only:
        sections += matting_section(names, photos, found)
        print("matting done", flush=True)
    one_mp = next(rgb for rgb in photos if 0.8e6 <= rgb.shape[0] * rgb.shape[1] <= 1.2e6) \
        if any(0.8e6 <= rgb.shape[0] * rgb.shape[1] <= 1.2e6 for rgb in photos) else \
        cv2.resize(photos[0], (1000, 1000), interpolation=cv2.INTER_AREA)
    if "intermediate" in only:
        sections += intermediate_section(one_mp)
        print("intermediate done", flush=True)
    if "hop" in only:
        sections += hop_section(args.messages)
        print("hop done", flush=True)
    if "triton" in only:
        sections += triton_section(runs=15)
        print("triton done", flush=True)
    if "resize" in only:
        sections += resize_section(photos, found)
        print("resize done", flush=True)
    if "tiling" in only:
        sections += tiling_section()
    if "deflate" in only:
        from worker_io import deflate_section  # bench/worker_io.py

        sections += deflate_section([cut_out(rgb, mask, {}) for rgb, mask in zip(photos, found, strict=True)])
        print("deflate done", flush=True)
    if "io" in only:
        from worker_io import section as io_section  # bench/worker_io.py

        sections += io_section(one_mp)
        print("io done", flush=True)
    load = os.getloadavg()
    header = ["# The worker path: where a remove-background photo's time went, before and now", "",
              f"Produced by `bench/worker_path.py` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu_model()}, "
              f"{os.cpu_count()} cores, in {time.monotonic() - started:.0f} s; load average (1, 5, 15 min) at the "
              f"end {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}. Photos: the first {args.photos} of "
              "bench/photos.py's corpus. Python " + sys.version.split()[0] + ".", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.append:
        added = [f"Added by `bench/worker_path.py --only {args.only} --append` on {datetime.now(UTC):%Y-%m-%d %H:%M} "
                 f"UTC, {cpu_model()}, {os.cpu_count()} cores; load average (1, 5, 15 min) at the end {load[0]:.1f}, "
                 f"{load[1]:.1f}, {load[2]:.1f}.", ""]
        before = args.out.read_text().rstrip("\n") + "\n\n" if args.out.exists() else ""
        args.out.write_text(before + "\n".join(added + sections))
    else:
        args.out.write_text("\n".join(header + sections))
    print(args.out)


if __name__ == "__main__":
    main()
