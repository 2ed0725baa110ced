"""One version for the platform (issue 16): every package, the chart, the images and ``GET /healthz`` say the
same. The source is common/pyproject.toml (what the installed photocraft-common reports at run time); the
other places must equal it. The rendered chart's image tags are checked in tests/chart/test_chart_version.py."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

import httpx
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from photocraft_common import health_routes
from photocraft_common.health import VERSION, HealthServer
from photocraft_gateway.app import create_app as gateway_app
from photocraft_notifier.app import create_app as notifier_app

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "common" / "pyproject.toml"
PACKAGES = [SOURCE, ROOT / "models" / "pyproject.toml", ROOT / "sdk" / "pyproject.toml",
            *sorted((ROOT / "services").glob("*/pyproject.toml"))]
CHART = ROOT / "charts" / "photocraft"
SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")  # a release; Helm needs SemVer 2


def pyproject_version(path: Path) -> str:
    return tomllib.loads(path.read_text())["project"]["version"]


def the_version() -> str:
    return pyproject_version(SOURCE)


def test_the_version_is_a_release_and_installed():
    assert SEMVER.fullmatch(the_version()), the_version()
    # Editable installs record the version when installed: after a change, `make setup` (pip install -e) again.
    assert version("photocraft-common") == VERSION == the_version()


def test_every_package_has_the_version():
    assert len(PACKAGES) == 8, PACKAGES  # common, models, sdk and the five services
    found = {str(path.relative_to(ROOT)): pyproject_version(path) for path in PACKAGES}
    assert found == dict.fromkeys(found, the_version())


def test_the_kafka_contract_has_the_version():
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert document["info"]["version"] == the_version()


def test_the_chart_and_the_images_have_the_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["version"], chart["appVersion"]) == (the_version(), the_version())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    # An empty tag means the chart's appVersion (templates/_helpers.tpl); the chart test renders it.
    assert values["image"]["tag"] == values["triton"]["image"]["tag"] == ""
    # `make images` tags localhost/photocraft:<VERSION> and localhost/photocraft-triton:<VERSION>.
    made = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "print-version: ; @echo $(VERSION)",
                           "print-version"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30)
    assert made.stdout.strip() == the_version()


def test_healthz_of_the_fastapi_services_answers_the_version():
    app = FastAPI()
    app.include_router(health_routes.router)
    with TestClient(app) as client:
        assert client.get("/healthz").json() == {"status": "ok", "version": the_version()}
    # The gateway's and notifier's OpenAPI documents carry it too (built without starting the apps).
    assert gateway_app().openapi()["info"]["version"] == notifier_app().openapi()["info"]["version"] == the_version()


async def test_healthz_of_the_health_server_answers_the_version():
    server = HealthServer({}, "127.0.0.1", 0)  # scheduler, gpu-inference, storage-janitor
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/healthz")).json() == {"status": "ok", "version": the_version()}
    finally:
        await server.stop()
