"""The quality benchmark's client side: jobs through the running platform, as a client sends them."""

from __future__ import annotations

import io
import json
import time

import httpx
import numpy as np
from PIL import Image

GATEWAY = "http://127.0.0.1:8080"


def png(image: np.ndarray) -> bytes:
    """``(H, W, 3) uint8`` RGB as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def submit(client: httpx.Client, photo: np.ndarray | bytes, operation: str, params: dict) -> dict:
    """``POST /v1/jobs`` with the photo (pixels, sent as PNG, or an encoded file's bytes); the job's JSON."""
    body = photo if isinstance(photo, bytes) else png(photo)
    response = client.post(f"{GATEWAY}/v1/jobs", files={"file": ("photo", body)},
                           data={"operation": operation, "params": json.dumps(params)})
    response.raise_for_status()
    return response.json()


def finish(client: httpx.Client, job: dict, timeout_s: float = 900) -> dict:
    """The job's view (``GET`` with its own token) once completed. Raises RuntimeError if it failed or
    was cancelled, TimeoutError after ``timeout_s`` seconds."""
    headers = {"Authorization": f"Bearer {job['token']}"}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = client.get(job["status_url"], headers=headers).raise_for_status().json()
        if view["status"] == "completed":
            return view
        if view["status"] in ("failed", "cancelled"):
            raise RuntimeError(f"job {job['job_id']} {view['status']}: {view['error']}")
        time.sleep(0.5)
    raise TimeoutError(f"job {job['job_id']} did not finish in {timeout_s} s")


def image(client: httpx.Client, view: dict) -> np.ndarray:
    """The completed job's result image, ``(H, W, 3) uint8`` RGB."""
    content = client.get(view["result_url"]).raise_for_status().content
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def json_results(client: httpx.Client, view: dict) -> list[dict]:
    """The completed job's JSON results (e.g. restore's analysis report), in the order listed; [] if none."""
    return [client.get(r["url"]).raise_for_status().json() for r in view.get("results") or []
            if r.get("content_type", "").startswith("application/json")]
