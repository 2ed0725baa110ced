"""The worker's I/O around the model, as it was (one step after another) and as it is now (overlapped).

    .venv/bin/python bench/worker_path.py --only io

A section of bench/results/worker_path.md, against the local platform (`make up`): its SeaweedFS S3,
Redis (expiry index) and Kafka (acks=all, on a topic made for the run, so no client sees these events).
Rounds of before and now alternate, so that the machine's load falls on both alike:

- before a task's model: the job's deadline, the reuse manifest (missing), the ``started`` event, the
  input from S3, then its decode, each awaited in turn (before) against worker.py now: deadline and
  manifest at once with the input fetched meanwhile, events published in order beside the work
  (events.OrderedEvents);
- after the model: a restore-like 1 MP output (RGB PNG and its mask) encoded and stored one after the
  other, then the manifest, a progress event awaited (before), against Worker._store_images (both at
  once), the manifest, the progress event flushed (now);
- an S3 put of a 3.5 MB result with botocore's default CRC32 checksum against
  ``request_checksum_calculation="when_required"`` (storage.make_client now).

``deflate_section`` (``--only deflate``): the cut-out results as PNG with libpng's zlib (images.encode now)
against the same Up-filtered rows deflated by libdeflate or zlib-ng, no platform needed but Triton's masks.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import struct
import time
import uuid
import zlib

import boto3
import imagecodecs
import numpy as np
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from botocore.config import Config
from PIL import Image

from photocraft_common.contracts import JobEvent, ObjectRef, Progress, Started, TaskOutput, new_id, now
from photocraft_common.events import OrderedEvents
from photocraft_common.expiry import ExpiryIndex
from photocraft_common.images import decode, encode
from photocraft_common.kafka import connection_kwargs, make_broker, publish
from photocraft_common.redis_client import make_redis
from photocraft_common.settings import PlatformSettings
from photocraft_common.storage import ObjectStore, make_client, sibling_key
from photocraft_inference.runners import Produced
from photocraft_inference.worker import Worker


class BenchEvents:
    """EventPublisher's emit, to a topic of the run's own."""

    def __init__(self, broker, topic: str) -> None:
        self.broker, self.topic = broker, topic

    async def emit(self, job_id: str, tenant_id: str, **kind) -> None:
        event = JobEvent(event_id=new_id(), job_id=job_id, tenant_id=tenant_id, time=now(), **kind)
        await publish(self.broker, self.topic, event)


async def pre_before(store: ObjectStore, events: BenchEvents, job: str, key: str, ref: ObjectRef) -> None:
    await store.job_deadline(job)
    await store.read_manifest(key)
    await events.emit(job, "bench", started=Started(stage="s", worker_id="bench"))
    data = await store.get(ref)
    await asyncio.to_thread(decode, data)
    await events.emit(job, "bench", progress=Progress(stage="s", percent=10, message="input decoded"))


async def pre_now(store: ObjectStore, events: OrderedEvents, job: str, key: str, ref: ObjectRef) -> None:
    fetch = asyncio.ensure_future(store.get(ref))
    await asyncio.gather(store.job_deadline(job), store.read_manifest(key))
    events.emit(job, "bench", started=Started(stage="s", worker_id="bench"))
    await asyncio.to_thread(decode, await fetch)
    events.emit(job, "bench", progress=Progress(stage="s", percent=10, message="input decoded"))


async def post_before(store: ObjectStore, events: BenchEvents, job: str, key: str, produced: Produced) -> None:
    height, width = produced.image.shape[:2]
    data = await asyncio.to_thread(encode, produced.image, "png")
    await store.put(key, data, "image/png", width, height)
    mask = await asyncio.to_thread(encode, produced.mask, "png")
    await store.put(sibling_key(key, "mask.png"), mask, "image/png", width, height)
    await store.write_manifest(key, TaskOutput())
    await events.emit(job, "bench", progress=Progress(stage="s", percent=95, message="result stored"))


async def post_now(worker: Worker, store: ObjectStore, events: OrderedEvents, job: str, key: str,
                   produced: Produced) -> None:
    await worker._store_images(key, "bench", produced, 92, None, "bench")
    await store.write_manifest(key, TaskOutput())
    events.emit(job, "bench", progress=Progress(stage="s", percent=95, message="result stored"))
    await events.flush()


async def measure(photo: np.ndarray, rounds: int) -> dict[str, list[float]]:
    settings = PlatformSettings()
    redis = make_redis(settings.redis)
    store = ObjectStore(settings.s3, ExpiryIndex(redis, 3600))
    topic = f"photocraft.bench.io.{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(**connection_kwargs(settings.kafka))
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    broker = make_broker(settings.kafka, "bench-worker-io")
    prefix = f"bench/worker-io/{uuid.uuid4().hex}"
    mask = np.where(photo.mean(axis=2) > 200, 255, 0).astype(np.uint8)  # a few scattered regions, as restore's
    produced = Produced(photo, mask)
    times: dict[str, list[float]] = {k: [] for k in ("pre before", "pre now", "post before", "post now")}
    try:
        await broker.start()
        bench_events = BenchEvents(broker, topic)
        worker = Worker(broker, store, None, "bench", None)
        ref = await store.put(f"{prefix}/input.jpg", encode(photo, "jpg"), "image/jpeg")
        for n in range(rounds + 1):  # the first round warms connections up, not counted
            for way in ("before", "now"):
                job, key = new_id(), f"{prefix}/{n}-{way}.png"
                started = time.perf_counter()
                if way == "before":
                    await pre_before(store, bench_events, job, key, ref)
                else:
                    ordered = OrderedEvents(bench_events)
                    await pre_now(store, ordered, job, key, ref)
                middle = time.perf_counter()
                if way == "before":
                    await post_before(store, bench_events, job, key, produced)
                else:
                    await post_now(worker, store, ordered, job, key, produced)
                if n:
                    times[f"pre {way}"].append(middle - started)
                    times[f"post {way}"].append(time.perf_counter() - middle)
    finally:
        keys = [f"{prefix}/input.jpg"] + [f"{prefix}/{n}-{w}.{s}" for n in range(rounds + 1) for w in ("before", "now")
                                          for s in ("png", "mask.png", "manifest.json")]
        for k in keys:
            await asyncio.to_thread(store.client.delete_object, Bucket=store.bucket, Key=k)
        await broker.stop()
        await admin.delete_topics([topic])
        await admin.close()
        await redis.aclose()
    return times


def checksum_puts(rounds: int) -> dict[str, list[float]]:
    settings = PlatformSettings().s3
    now_client = make_client(settings)
    default = boto3.client("s3", endpoint_url=settings.endpoint_url, region_name=settings.region,
                           aws_access_key_id=settings.access_key_id.get_secret_value(),
                           aws_secret_access_key=settings.secret_access_key.get_secret_value(),
                           config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                         retries={"max_attempts": 5, "mode": "standard"}))
    body = np.random.default_rng(1).integers(0, 256, 3_500_000, dtype=np.uint8).tobytes()  # PNG-like entropy
    key = f"bench/worker-io/{uuid.uuid4().hex}.bin"
    out: dict[str, list[float]] = {"default": [], "when_required": []}
    try:
        for n in range(rounds + 1):
            for label, client in (("default", default), ("when_required", now_client)):
                started = time.perf_counter()
                client.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType="image/png")
                if n:
                    out[label].append(time.perf_counter() - started)
    finally:
        now_client.delete_object(Bucket=settings.bucket, Key=key)
    return out


def section(photo: np.ndarray, rounds: int = 20) -> list[str]:
    """Markdown lines of the section, for a ``photo`` (H, W, 3) uint8 of about 1 MP."""
    times = asyncio.run(measure(photo, rounds))
    puts = checksum_puts(rounds)

    def med(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.0f}"
    height, width = photo.shape[:2]
    return ["## 8. The worker's I/O around the model: one step after another (before), overlapped (now)", "",
            f"bench/worker_io.py: {rounds} rounds of each, alternating; a {width}x{height} photo (JPEG input, "
            "PNG output and a restore-like mask); S3, Redis and Kafka of the local platform. Median ms.", "",
            "| part | before | now |", "|---|---:|---:|",
            f"| before the model: deadline, reuse manifest, started event, input get, decode, progress event "
            f"| {med(times['pre before'])} | {med(times['pre now'])} |",
            f"| after the model: image and mask encoded and stored, manifest, progress event "
            f"| {med(times['post before'])} | {med(times['post now'])} |",
            f"| S3 put of 3.5 MB, CRC32 checksum (botocore default) / none (when_required) "
            f"| {med(puts['default'])} | {med(puts['when_required'])} |", ""]


def png_with(pixels: np.ndarray, deflate) -> bytes:
    """A PNG of ``pixels`` ((H, W, 4) RGBA or (H, W, 3) RGB uint8): every row Up-filtered (images.PNG_RESULT before),
    the filtered rows compressed into a zlib stream by ``deflate`` (bytes -> zlib bytes), one IDAT chunk."""
    height, width, channels = pixels.shape
    rows = pixels.reshape(height, -1)
    up = rows.copy()
    up[1:] -= rows[:-1]  # Up: each byte minus the one above it, modulo 256
    filtered = np.hstack([np.full((height, 1), 2, np.uint8), up]).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, {3: 2, 4: 6}[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", deflate(filtered)) + chunk(b"IEND", b"")


def deflate_section(results: list[np.ndarray]) -> list[str]:
    """Markdown lines: the cut-outs ``results`` ((H, W, 4) uint8) as PNG with libpng's zlib (now) against
    the same rows deflated by libdeflate and zlib-ng (imagecodecs), sizes against Pillow at level 6."""
    ways = {"imagecodecs png_encode level 1, Paeth, run-length (now: libpng, zlib 1.2)": lambda x: encode(x, "png"),
            "Up rows, libdeflate level 3": lambda x: png_with(x, lambda b: imagecodecs.deflate_encode(b, level=3)),
            "Up rows, zlib-ng level 3": lambda x: png_with(x, lambda b: imagecodecs.zlibng_encode(b, level=3))}
    per_mp = {name: [] for name in ways}
    ratio = {name: [] for name in ways}
    same = dict.fromkeys(ways, True)
    for rgba in results:
        buffer = io.BytesIO()
        Image.fromarray(rgba).save(buffer, format="PNG", compress_level=6)
        base = len(buffer.getvalue())
        for name, work in ways.items():
            seconds, data = [], b""
            for _ in range(3):
                started = time.perf_counter()
                data = work(rgba)
                seconds.append(time.perf_counter() - started)
            per_mp[name].append(min(seconds) / (rgba.shape[0] * rgba.shape[1] / 1e6))
            ratio[name].append(len(data) / base)
            same[name] &= np.array_equal(np.asarray(Image.open(io.BytesIO(data))), rgba)
    lines = ["## 9. The result's PNG: the same rows, a faster deflate (a candidate, not in images.py)", "",
             f"bench/worker_io.py: the {len(results)} cut-outs of section 1, best of 3; size against Pillow at "
             "level 6 (section 1's before). The candidates write the PNG's three chunks themselves "
             "(worker_io.png_with) around imagecodecs' deflate; pixels read back with Pillow.", "",
             "| encoder | ms per MP, median | size vs level 6, median | max | pixels read back |",
             "|---|---:|---:|---:|---|"]
    lines += [f"| {name} | {statistics.median(per_mp[name]) * 1000:.0f} | {statistics.median(ratio[name]):.2f}x | "
              f"{max(ratio[name]):.2f}x | {'identical' if same[name] else 'DIFFERENT'} |" for name in ways]
    return [*lines, ""]
