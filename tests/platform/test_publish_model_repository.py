"""`models/weights.py publish`: the model repository mirrored to the real S3 (SeaweedFS), as the
Helm hook Job in the Triton image runs it, under a unique prefix that the test removes."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from .helpers import ROOT

WEIGHTS = ROOT / "var" / "weights" / "u2netp"


@pytest.fixture
def prefix(s3, settings):
    name = f"test-model-repository-{uuid.uuid4().hex[:8]}"
    yield name
    for key in _keys(s3, settings.s3.bucket, name):
        s3.delete_object(Bucket=settings.s3.bucket, Key=key)
    assert not _keys(s3, settings.s3.bucket, name)


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _publish(settings, *args: str) -> str:
    env = os.environ | {
        "PHOTOCRAFT_S3__ENDPOINT_URL": settings.s3.endpoint_url,
        "PHOTOCRAFT_S3__REGION": settings.s3.region,
        "PHOTOCRAFT_S3__ACCESS_KEY_ID": settings.s3.access_key_id.get_secret_value(),
        "PHOTOCRAFT_S3__SECRET_ACCESS_KEY": settings.s3.secret_access_key.get_secret_value(),
    }
    result = subprocess.run([ROOT / ".venv-triton" / "bin" / "python", ROOT / "models" / "weights.py", "publish",
                             *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _get(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_publish_mirrors_the_gpu_repository_with_real_files(s3, settings, prefix, tmp_path):
    bucket = settings.s3.bucket
    s3.put_object(Bucket=bucket, Key=f"{prefix}/gpu/retired_model/config.pbtxt", Body=b"old")  # to be removed
    s3.put_object(Bucket=bucket, Key=f"{prefix}/gpu-sibling/keep.txt", Body=b"not under the prefix")
    configs = tmp_path / "configs"
    subprocess.run([ROOT / ".venv-triton" / "bin" / "python", ROOT / "models" / "weights.py", "configs",
                    "--device", "gpu", "--out", configs], check=True, capture_output=True)
    chart_tone = (configs / "tone.pbtxt").read_text().replace("count: 1", "count: 3")
    (configs / "tone.pbtxt").write_text(chart_tone)

    output = _publish(settings, "--device", "gpu", "--to", f"s3://{bucket}/{prefix}/gpu/", "--configs", str(configs))
    assert "removed 1 stale" in output
    keys = _keys(s3, bucket, f"{prefix}/")
    assert f"{prefix}/gpu/retired_model/config.pbtxt" not in keys
    assert f"{prefix}/gpu-sibling/keep.txt" in keys
    published = {k.removeprefix(f"{prefix}/gpu/") for k in keys if k.startswith(f"{prefix}/gpu/")}
    models = {key.split("/")[0] for key in published}
    assert {"u2netp", "tone", "selfie", "oidn"} <= models  # weights that registry packages ship
    for model in models:
        assert {f"{model}/config.pbtxt", f"{model}/1/model.py"} <= published

    # symlinks went up as the files they point to
    for name in ("model.onnx", "model.serving.onnx"):
        assert _get(s3, bucket, f"{prefix}/gpu/u2netp/1/{name}") == (WEIGHTS / name).read_bytes()
    assert _get(s3, bucket, f"{prefix}/gpu/tone/1/model.py") == \
        (ROOT / "models" / "repository" / "tone" / "1" / "model.py").read_bytes()

    # configs: from --configs, with the weights digest appended; Triton can parse them
    tone = _get(s3, bucket, f"{prefix}/gpu/tone/config.pbtxt").decode()
    assert tone.startswith(chart_tone) and '"photocraft.weights"' in tone
    parsed = text_format.Parse(tone, model_config_pb2.ModelConfig())
    assert parsed.instance_group[0].count == 3 and parsed.instance_group[0].kind == parsed.instance_group[0].KIND_CPU
    u2netp = text_format.Parse(_get(s3, bucket, f"{prefix}/gpu/u2netp/config.pbtxt").decode(),
                               model_config_pb2.ModelConfig())
    assert u2netp.backend == "onnxruntime" and u2netp.instance_group[0].kind == u2netp.instance_group[0].KIND_GPU
    assert u2netp.parameters["photocraft.weights"].string_value


def test_publish_refuses_a_bucket_without_a_prefix(settings):
    result = subprocess.run([ROOT / ".venv-triton" / "bin" / "python", ROOT / "models" / "weights.py", "publish",
                             "--to", f"s3://{settings.s3.bucket}"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "non-empty PREFIX" in result.stderr


def test_publish_creates_a_missing_bucket(s3, settings):
    bucket = f"test-models-{uuid.uuid4().hex[:8]}"
    try:
        output = _publish(settings, "--device", "cpu", "--to", f"s3://{bucket}/model-repository")
        assert f"created bucket {bucket}" in output
        assert "model-repository/u2netp/config.pbtxt" in _keys(s3, bucket, "model-repository/")
        assert f"created bucket {bucket}" not in _publish(settings, "--to", f"s3://{bucket}/model-repository")
    finally:
        for key in _keys(s3, bucket, ""):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)

