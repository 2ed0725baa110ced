"""Take photos through the running platform exactly as a client would.

    python scripts/demo.py --showcase                 every operation on sample photos (make run)
    python scripts/demo.py [PHOTO] [--operation OP] [--params JSON]

Each job is submitted with ``POST /v1/jobs``; every event from the job's
WebSocket is printed as it arrives; the results are downloaded into out/.
Photos default to scikit-image's samples (astronaut, chelsea, coffee, camera).
With ``PHOTOCRAFT_API_KEY`` set the jobs are that tenant's (make run sets a
local demo tenant's key); without it they are an anonymous device's, which
may make 5 edits a day.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import websockets
from PIL import Image
from skimage import data

GATEWAY = "http://127.0.0.1:8080"
OUT = Path(__file__).resolve().parent.parent / "out"
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def old_print() -> bytes:
    """scikit-image's coffee, aged: gray, grainy, JPEG-compressed, scratched."""
    rng = np.random.default_rng(7)
    gray = np.asarray(Image.fromarray(data.coffee()).convert("L").convert("RGB"), dtype=float)
    grain = rng.normal(0, 18, gray.shape[:2])[..., np.newaxis]  # in the lightness only, like film grain
    noisy = np.clip(gray + grain, 0, 255).astype(np.uint8)
    for _ in range(8):
        x0, y0, x1, y1 = rng.integers(0, 400, 4)
        noisy[np.linspace(y0, y1, 600).astype(int), np.linspace(x0, x1 + 150, 600).astype(int)] = 235
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="JPEG", quality=30)
    return buffer.getvalue()


SHOWCASE = [  # (name, operation, params, photo)
    ("astronaut", "remove-background", {}, lambda: png(data.astronaut())),
    ("chelsea", "enhance", {"scale": 2}, lambda: png(data.chelsea()[:200, 100:350])),
    ("astronaut", "retouch", {"skin": 0.7, "teeth": 0.6, "eyes": 0.6}, lambda: png(data.astronaut())),
    ("old-coffee", "restore", {}, old_print),
    ("camera", "colorize", {}, lambda: png(data.camera())),
    ("prompt", "text-to-image", {"prompt": "a lighthouse on a cliff at dusk", "steps": 2}, None),
]


def describe(event: dict) -> str:
    details = {k: v for k, v in event.items() if k not in ("type", "job_id", "time", "seq")}
    if event["type"] == "completed":
        details = {"results": [f"{r['role']} {r['width']}x{r['height']} {r['content_type']}"
                               for r in event["results"]], "warnings": event["warnings"]}
    return f"{event['type']:<16}" + " ".join(f"{k}={v}" for k, v in details.items())


async def follow(events_url: str, token: str) -> dict:
    """Print the job's events until the terminal one, which is returned."""
    started = time.monotonic()
    async with websockets.connect(f"{events_url}?token={token}") as socket:
        async for raw in socket:
            event = json.loads(raw)
            if event["type"] == "heartbeat":
                continue
            stamp = datetime.now().strftime("%H:%M:%S.%f")[:-3]
            print(f"{stamp} +{time.monotonic() - started:6.2f}s  {describe(event)}", flush=True)
            if event["type"] in ("completed", "failed", "cancelled"):
                return event
    raise SystemExit("the event stream closed before the job ended")


def run(name: str, operation: str, params: dict, photo: bytes | None) -> bool:
    """One job, start to finish; True when its results were written."""
    print(f"\n== {operation} on {name} {json.dumps(params) if params else ''}")
    files = {"file": (f"{name}.png", photo)} if photo is not None else None
    key = os.environ.get("PHOTOCRAFT_API_KEY")
    response = httpx.post(f"{GATEWAY}/v1/jobs", timeout=60, files=files,
                          data={"operation": operation, "params": json.dumps(params)},
                          headers={"Authorization": f"Bearer {key}"} if key else {})
    if response.status_code != 202:
        problem = response.json()
        print(f"not run: {response.status_code} {problem.get('title')}: {problem.get('detail')}")
        return False
    job = response.json()
    print(f"job {job['job_id']} accepted; events: {job['events_url']}")
    end = asyncio.run(follow(job["events_url"], job["token"]))
    if end["type"] != "completed":
        print(f"job {end['type']}: {end.get('code', '')} {end.get('message') or end.get('reason', '')}")
        return False
    OUT.mkdir(exist_ok=True)
    for result in end["results"]:
        suffix = "" if result["role"] == "image" else f"-{result['role']}"
        path = OUT / f"{name}-{operation}{suffix}.{EXTENSIONS[result['content_type']]}"
        path.write_bytes(httpx.get(result["url"], timeout=60).raise_for_status().content)
        print(f"result written to {path}")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", nargs="?", type=Path)
    parser.add_argument("--operation", default="remove-background")
    parser.add_argument("--params", default="{}", help="the operation's parameters as JSON")
    parser.add_argument("--showcase", action="store_true", help="every operation on sample photos")
    args = parser.parse_args()
    if args.showcase:
        done = [run(name, op, params, photo() if photo else None) for name, op, params, photo in SHOWCASE]
        print(f"\n{sum(done)} of {len(done)} operations produced results in {OUT}")
        if not any(done):
            raise SystemExit(1)
        return
    photo = (None if args.operation == "text-to-image"
             else args.photo.read_bytes() if args.photo else png(data.astronaut()))
    if not run(args.photo.stem if args.photo else "astronaut", args.operation, json.loads(args.params), photo):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
