"""Take a photo through the running platform exactly as a client would.

    python scripts/demo.py [PHOTO] [--operation remove-background] [--params JSON]

Uploads PHOTO (default: scikit-image's astronaut portrait) with
``POST /v1/jobs``, prints each event from the job's WebSocket as it arrives,
then downloads the result into out/ and prints its path.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import websockets

GATEWAY = "http://127.0.0.1:8080"
OUT = Path(__file__).resolve().parent.parent / "out"


def astronaut_png() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="PNG")
    return buffer.getvalue()


def describe(event: dict) -> str:
    kind = event["type"]
    details = {k: v for k, v in event.items() if k not in ("type", "job_id", "time", "seq")}
    if kind == "completed":
        details = {"results": [f"{r['width']}x{r['height']} {r['content_type']}" for r in event["results"]]}
    return f"{kind:<16}" + " ".join(f"{k}={v}" for k, v in details.items())


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photo", nargs="?", type=Path)
    parser.add_argument("--operation", default="remove-background")
    parser.add_argument("--params", default="{}", help="the operation's parameters as JSON")
    args = parser.parse_args()

    name = args.photo.stem if args.photo else "astronaut"
    data = args.photo.read_bytes() if args.photo else astronaut_png()
    print(f"submitting {name} ({len(data)} bytes) for {args.operation} to {GATEWAY}")
    response = httpx.post(f"{GATEWAY}/v1/jobs", timeout=60,
                          files={"file": (args.photo.name if args.photo else "astronaut.png", data)},
                          data={"operation": args.operation, "params": args.params})
    if response.status_code != 202:
        raise SystemExit(f"rejected: {response.status_code} {response.text}")
    job = response.json()
    print(f"job {job['job_id']} accepted; events: {job['events_url']}")

    end = asyncio.run(follow(job["events_url"], job["token"]))
    if end["type"] != "completed":
        reason = end.get("message") or end.get("reason", "")
        raise SystemExit(f"job {end['type']}: {end.get('code', '')} {reason}")
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}-{args.operation}.png"
    path.write_bytes(httpx.get(end["result_url"], timeout=60).raise_for_status().content)
    print(f"result written to {path}")


if __name__ == "__main__":
    sys.exit(main())
