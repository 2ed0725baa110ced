"""Liveness and readiness of every service (the Helm chart's probes), on the running platform and on
extra service processes pointed at a dependency that does not answer."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from photocraft_common.health import VERSION

BIN = Path(sys.executable).parent
# Health ports of the platform's processes: HEALTH in infra/stack.py.
HEALTH = {"gateway": 8080, "notifier": 8081, "scheduler": 9410, "storage-janitor": 9420,
          "gpu-inference-0": 9400, "gpu-inference-1": 9401}
EXPECTED_CHECKS = {"gateway": {"kafka", "redis", "s3", "postgres"}, "notifier": {"kafka", "redis", "s3", "postgres"},
                   "scheduler": {"kafka", "redis", "s3", "postgres"}, "storage-janitor": {"redis", "s3"},
                   "gpu-inference-0": {"kafka", "redis", "s3", "triton"},
                   "gpu-inference-1": {"kafka", "redis", "s3", "triton"}}


@pytest.mark.parametrize("name", HEALTH)
def test_every_platform_service_is_live_and_ready(name):
    base = f"http://127.0.0.1:{HEALTH[name]}"
    live = httpx.get(f"{base}/healthz", timeout=5)
    assert live.status_code == 200 and live.json() == {"status": "ok", "version": VERSION}
    ready = httpx.get(f"{base}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": dict.fromkeys(EXPECTED_CHECKS[name], "ok")}


def free_port() -> int:
    """A local port where nothing listens (taken from the kernel, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def service(command: str, port: int, log: Path, **env: str):
    """Run ``command`` from the venv with its HTTP server on ``port``; yield its base URL once /healthz
    answers; stop it with SIGTERM."""
    with open(log, "w") as out:
        process = subprocess.Popen([BIN / command], stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PHOTOCRAFT_PORT": str(port), **env})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"{command} exited:\n{log.read_text()[-3000:]}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{command} never answered /healthz:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)  # a poll of a starting server, bounded by the deadline
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_gateway_is_live_but_not_ready_without_redis(tmp_path):
    # The gateway has no consumer group: an extra one leaves the platform's alone.
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    with service("photocraft-gateway", free_port(), tmp_path / "gateway.log", PHOTOCRAFT_REDIS__URL=redis_url) as base:
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "unavailable" and body["failing"] == ["redis"]
        assert body["checks"]["kafka"] == body["checks"]["s3"] == body["checks"]["postgres"] == "ok"
        assert "ConnectionError" in body["checks"]["redis"]


def test_janitor_is_ready_only_while_s3_answers(tmp_path):
    unreachable = f"http://127.0.0.1:{free_port()}"
    with service("photocraft-storage-janitor", free_port(), tmp_path / "janitor-down.log",
                 PHOTOCRAFT_S3__ENDPOINT_URL=unreachable) as base:
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["s3"]
        assert unreachable in ready.json()["checks"]["s3"]
    # The same service with the platform's S3 settings; an hour between sweeps, so it sweeps once.
    with service("photocraft-storage-janitor", free_port(), tmp_path / "janitor-up.log",
                 PHOTOCRAFT_INTERVAL_S="3600") as base:
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "checks": {"redis": "ok", "s3": "ok"}}
