"""A photo through the platform running from the Helm chart's rendered manifests, in containers
built from our Dockerfiles (`make chart-test`).

The chart is rendered with values-local.yaml (host network, the local images,
the Kafka, Redis and S3 that `make up` started) plus the local S3's keys, which
that file leaves out (written at test time to a values file only its owner
reads, never committed), and run with `podman kube play`
(tests/deploy/kube.py). The local stack's own services are stopped meanwhile,
so the containers are the only consumers of the platform's topics, and started
again at the end.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from PIL import Image
from skimage import data as samples

from photocraft_common.settings import PlatformSettings
from tests.chart.helm import CHART, render

from .kube import Podman, plan

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "chart-test"
GATEWAY = "http://127.0.0.1:18080"  # values-local.yaml
LOCAL_GATEWAY = "http://127.0.0.1:8080"


def supervisorctl(*args: str) -> str:
    result = subprocess.run([Path(sys.executable).parent / "supervisorctl", "-c", ROOT / "infra" / "supervisord.conf",
                             *args], capture_output=True, text=True, check=False, timeout=180)
    return result.stdout + result.stderr


def wait_until(check, timeout_s: float, what: str, interval_s: float = 1.0, diagnose=lambda: "") -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        time.sleep(interval_s)
    pytest.fail(f"{what} did not happen in {timeout_s:.0f} s ({last!r})\n{diagnose()}")


def ready(url: str) -> bool:
    return httpx.get(url, timeout=3).status_code == 200


@pytest.fixture(scope="module")
def podman(tmp_path_factory) -> Podman:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "infra" / "images" / "containers.conf")}
    runner = Podman(tmp_path_factory.mktemp("chart"), env)
    for image in ("localhost/photocraft", "localhost/photocraft-triton"):
        tag = f"{image}:{yaml_app_version()}"
        if runner.run("image", "exists", tag, check=False).returncode != 0:
            pytest.fail(f"{tag} is not built: run `make images`", pytrace=False)
    return runner


def local_values(folder: Path) -> list[Path]:
    """values-local.yaml and a values file (0600, in ``folder``) with the S3 keys and the database URL (its
    password in var/secrets/postgres-password) of the running stack."""
    settings = PlatformSettings()
    key_id, secret = settings.s3.required_keys()  # var/s3/security/s3.json
    keys = folder / "s3-keys.yaml"
    keys.touch(mode=0o600)
    keys.write_text(yaml.safe_dump({"s3": {"accessKeyId": key_id, "secretAccessKey": secret},
                                    "database": {"url": settings.database.required_url()}}))
    return [CHART / "values-local.yaml", keys]


def yaml_app_version() -> str:
    return str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])


@pytest.fixture(scope="module")
def chart_platform(podman, tmp_path_factory):
    """The chart's workloads running in containers, the local services stopped meanwhile."""
    steps = plan(render(local_values(tmp_path_factory.mktemp("values")), release=RELEASE))
    assert {m["metadata"]["name"] for m in steps.hooks if m["kind"] == "Pod"} == {
        f"{RELEASE}-photocraft-bootstrap", f"{RELEASE}-photocraft-publish-models"}
    supervisorctl("stop", "services:*")
    try:
        podman.use_config_maps(steps.config_maps)
        for index, manifest in enumerate(steps.hooks):
            podman.play(f"hook-{index}", [manifest])
            if manifest["kind"] == "Pod":  # a Job: it must run to completion
                container = podman.containers(manifest["metadata"]["name"])[0]["Names"][0]
                code = podman.wait_for_exit(container, timeout=600)
                assert code == 0, f"{manifest['metadata']['name']} exited {code}:\n{podman.logs(container)}"
        podman.play("workloads", steps.workloads)
        wait_until(lambda: ready(f"{GATEWAY}/readyz"), 240, "the gateway's readiness",
                   diagnose=lambda: podman.logs(f"{RELEASE}-photocraft-gateway"))
        yield podman
    finally:
        podman.down()
        supervisorctl("start", "services:*")
        wait_until(lambda: ready(f"{LOCAL_GATEWAY}/readyz"), 180, "the local gateway's return")


def test_a_photo_goes_through_the_platform_running_from_the_chart(chart_platform):
    status = supervisorctl("status")
    assert "services:gateway" in status and "RUNNING" not in status.split("services:gateway")[1].splitlines()[0]
    running = [c["Names"][0] for c in chart_platform.containers(f"{RELEASE}-photocraft")
               if c.get("State") == "running"]
    for component in ("gateway", "notifier", "scheduler", "storage-janitor", "gpu-inference"):
        assert any(f"{RELEASE}-photocraft-{component}" in name for name in running), (component, running)

    key = chart_platform.run("exec", next(n for n in running if "-gateway" in n),
                             "photocraft-tenants", "create", "chart-test", "--tier", "pro").stdout.strip()
    assert key.startswith("pc_"), key
    photo = io.BytesIO()
    Image.fromarray(samples.astronaut()).save(photo, format="PNG")
    with httpx.Client(base_url=GATEWAY, timeout=30, headers={"Authorization": f"Bearer {key}"}) as client:
        accepted = client.post("/v1/jobs", files={"file": ("astronaut.png", photo.getvalue())},
                               data={"operation": "remove-background"})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        job: dict = {}

        def finished() -> bool:
            job.update(client.get(f"/v1/jobs/{job_id}").raise_for_status().json())
            return job["status"] in ("completed", "failed", "cancelled")

        wait_until(finished, 300, f"job {job_id}", interval_s=2,
                   diagnose=lambda: "\n".join(chart_platform.logs(n, 30) for n in running))
        assert job["status"] == "completed", job
        result = httpx.get(job["result_url"], timeout=30)
    assert result.status_code == 200
    cutout = np.asarray(Image.open(io.BytesIO(result.content)))
    assert cutout.shape == (512, 512, 4)
    alpha = cutout[..., 3]
    # The astronaut is kept (the centre of the portrait is opaque), the background around her is not.
    assert alpha[200:330, 200:330].mean() > 200
    assert (alpha < 10).mean() > 0.1
