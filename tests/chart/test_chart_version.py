"""The rendered chart runs the images of the platform's version (tests/unit/test_version.py checks the rest)."""

from __future__ import annotations

import tomllib

import pytest

from .helm import GPU, PRODUCTION, ROOT, render


@pytest.mark.parametrize("values", [PRODUCTION, GPU], ids=["production", "gpu"])
def test_every_image_is_tagged_with_the_version(values):
    version = tomllib.loads((ROOT / "common" / "pyproject.toml").read_text())["project"]["version"]
    images = {c["image"] for m in render(values) if m["kind"] in {"Deployment", "StatefulSet", "Job"}
              for c in [*m["spec"]["template"]["spec"]["containers"],
                        *m["spec"]["template"]["spec"].get("initContainers", [])]}
    ours = {image for image in images if image.rsplit(":", 1)[0].rsplit("/", 1)[-1].startswith("photocraft")}
    names = {image.rsplit("/", 1)[-1].split(":")[0] for image in ours}  # the GPU values name a -gpu Triton image
    assert "photocraft" in names and any(name.startswith("photocraft-triton") for name in names), images
    assert {image.rsplit(":", 1)[1] for image in ours} == {version}, ours
