"""Non-commercial models only on opt-in, and ``GET /v1/models`` with licences (issue 16), on the running platform.

The local stack opts in to SD-Turbo's licence (infra/bin/gpu-inference), so the gateway lists it as served and
flagged not for commercial use. The product default is shown for real beside it: a gpu-inference pool and report
with the default settings, on the platform's Triton and the real model registry (reporting into a Redis database
of this test's own, so that the platform's available set is not disturbed), withholds SD-Turbo and refuses it.
"""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from photocraft_common.licences import ACCEPT_SETTING, gate
from photocraft_common.models import ModelDirectory
from photocraft_common.redis_client import make_redis
from photocraft_common.settings import RedisSettings
from photocraft_inference.main import reporter
from photocraft_inference.settings import InferenceSettings
from photocraft_inference.triton import ModelUnavailable, TritonPool

from .helpers import ROOT, random_checkpoint

REDIS_URL = "redis://127.0.0.1:6379/7"  # this test's own database (5 and 6 are other tests')
REGISTRY = tomllib.loads((ROOT / "models" / "registry.toml").read_text())["models"]
SAI = "LicenseRef-sai-nc-community"


async def served_models(client) -> dict[str, dict]:
    response = await client.get("/v1/models")
    assert response.status_code == 200, response.text
    return {m["model"]: m for m in response.json()["served"]}


async def test_get_models_lists_every_served_model_with_its_registry_licence(anonymous):
    served = await served_models(anonymous)  # no credentials needed
    assert "u2netp" in served and served["u2netp"]["licence_id"] == "Apache-2.0"
    for name, entry in served.items():
        registered = REGISTRY[name]
        assert (entry["licence_id"], entry["licence"], entry["commercial_use"], entry["operations"]) == (
            registered["licence_id"], registered["licence"], registered["commercial_use"], registered["operations"])


async def test_sd_turbo_is_served_here_on_the_opt_in_and_withheld_by_default(anonymous, tmp_path, monkeypatch):
    monkeypatch.delenv(ACCEPT_SETTING, raising=False)
    settings = InferenceSettings(redis=RedisSettings(url=REDIS_URL))  # the product default
    assert settings.accept_model_licences == []
    redis = make_redis(settings.redis)
    await redis.flushdb()
    async with random_checkpoint("sd_turbo", tmp_path):  # waits until the platform's workers serve it
        sd_turbo = (await served_models(anonymous))["sd_turbo"]
        assert (sd_turbo["licence_id"], sd_turbo["commercial_use"]) == (SAI, False)

        pool = TritonPool(settings, redis, {}, withheld=gate(REGISTRY, settings.accept_model_licences))
        await pool.start()
        try:
            assert "sd_turbo" in await pool.repository()  # Triton holds it
            directory = ModelDirectory(redis)
            await reporter(pool, directory, redis, settings, REGISTRY)()
            available, licences = await directory.available(), await directory.licences()
            assert "u2netp" in available and "sd_turbo" not in available
            assert ACCEPT_SETTING in licences["sd_turbo"].withheld and not licences["u2netp"].withheld
            params = np.array([[b'{"prompt": "a red bicycle", "steps": 1, "width": 64, "height": 64}']],
                              dtype=np.object_)
            with pytest.raises(ModelUnavailable, match=f"sd_turbo is withheld: .*{SAI}"):
                await pool.stream("sd_turbo", {"PARAMS": params}, "IMAGE", on_partial=None)
        finally:
            await pool.close()
            await redis.flushdb()
            await redis.aclose()
