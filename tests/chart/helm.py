"""Rendering charts/photocraft with the Helm binary that `make` installs in var/bin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "photocraft"
HELM = ROOT / "var" / "bin" / "helm"

# The values files of the chart's checks: a production install (the defaults
# plus the endpoints they leave empty), the same on GPU nodes, and this machine
# (with stand-ins for the local S3 keys and database URL, which values-local.yaml leaves out).
PRODUCTION = [CHART / "ci" / "production-values.yaml"]
GPU = [*PRODUCTION, CHART / "values-gpu.yaml"]
LOCAL = [CHART / "values-local.yaml", Path(__file__).with_name("local-s3-placeholders.yaml")]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        raise RuntimeError(f"{HELM} is missing: run `make {HELM.relative_to(ROOT)}`")
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check, timeout=120)


def value_args(files: list[Path], sets: dict[str, str] | None = None) -> list[str]:
    args = [arg for f in files for arg in ("-f", str(f))]
    return args + [arg for key, value in (sets or {}).items() for arg in ("--set", f"{key}={value}")]


def render(files: list[Path], sets: dict[str, str] | None = None, release: str = "pc") -> list[dict]:
    """The manifests ``helm template`` renders, parsed; raises CalledProcessError when Helm refuses."""
    out = helm("template", release, str(CHART), *value_args(files, sets)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(manifests: list[dict], kind: str, name_suffix: str = "") -> list[dict]:
    return [m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)]


def containers(manifest: dict) -> list[dict]:
    return manifest["spec"]["template"]["spec"]["containers"]


def env(container: dict) -> dict[str, dict]:
    """A container's environment: name -> its entry (with ``value`` or ``valueFrom``)."""
    return {e["name"]: e for e in container.get("env", [])}
