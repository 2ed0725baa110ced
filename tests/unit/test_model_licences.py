"""Non-commercial models only on opt-in (issue 16): the decision on the real models/registry.toml, the setting,
gpu-inference's report and its refusal, and the gateway's ``GET /v1/models`` and refusal, in-process on fakeredis.
Nothing needs to be running."""

from __future__ import annotations

import logging
import re
import tomllib
from pathlib import Path

import pytest
from fakeredis import FakeAsyncRedis, FakeServer
from fastapi.testclient import TestClient
from license_expression import get_spdx_licensing

from photocraft_common.licences import ACCEPT_SETTING, gate, licences, model_licence, servable
from photocraft_common.models import ModelDirectory
from photocraft_gateway.app import create_app
from photocraft_gateway.settings import GatewaySettings
from photocraft_inference import main as inference_main
from photocraft_inference.settings import InferenceSettings, ResidencySettings
from photocraft_inference.triton import ModelUnavailable, TritonPool

from .test_gateway_routes import KEYRING, Gateway, assert_problem

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = tomllib.loads((ROOT / "models" / "registry.toml").read_text())["models"]
SAI = "LicenseRef-sai-nc-community"


def test_by_default_every_model_is_served_but_the_non_commercial_one():
    assert servable(REGISTRY, REGISTRY, []) == sorted(set(REGISTRY) - {"sd_turbo"})
    [sd_turbo] = [e for e in licences(REGISTRY, REGISTRY, []) if e.withheld]
    assert (sd_turbo.model, sd_turbo.licence_id, sd_turbo.commercial_use) == ("sd_turbo", SAI, False)
    assert ACCEPT_SETTING in sd_turbo.withheld and SAI in sd_turbo.withheld
    assert sd_turbo.operations == ["text-to-image"] and "Non-Commercial" in sd_turbo.licence


@pytest.mark.parametrize("accepted", [[SAI], [SAI.lower()], ["MIT", f" {SAI} "]])
def test_accepting_its_licence_id_serves_it(accepted):
    assert servable(REGISTRY, REGISTRY, accepted) == sorted(REGISTRY)


@pytest.mark.parametrize("accepted", [["sai-nc-community"], ["Apache-2.0"], ["*"], [""]])
def test_only_the_exact_licence_id_opts_in(accepted):
    assert "sd_turbo" not in servable(REGISTRY, REGISTRY, accepted)


def test_a_model_outside_the_registry_is_withheld_as_of_unknown_licence():
    [entry] = licences(REGISTRY, ["mystery"], [SAI])
    assert entry.withheld and "not in the model registry" in entry.withheld and not entry.commercial_use


@pytest.mark.parametrize("entry", [{"licence_id": "MIT"}, {"licence_id": "MIT", "commercial_use": "yes"},
                                   {"commercial_use": True}])
def test_an_entry_without_its_licence_fields_is_an_error(entry):
    with pytest.raises(ValueError, match="^m: "):
        model_licence("m", entry)
    with pytest.raises(ValueError, match="^m: "):  # at once, not on the first request
        gate({**REGISTRY, "m": entry}, [])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_registry_licence_id_is_an_spdx_expression(name):
    """SPDX ids where SPDX has one; else a LicenseRef-<idstring> (SPDX 2.3, annex D)."""
    licence_id = REGISTRY[name]["licence_id"]
    if licence_id.startswith("LicenseRef-"):
        assert re.fullmatch(r"LicenseRef-[A-Za-z0-9.-]+", licence_id)
    else:
        assert not get_spdx_licensing().validate(licence_id).errors
    assert REGISTRY[name]["commercial_use"] is (licence_id != SAI)


def test_the_setting_is_off_by_default_and_a_comma_separated_list(monkeypatch):
    assert InferenceSettings(keyring=KEYRING).accept_model_licences == []
    monkeypatch.setenv(ACCEPT_SETTING, f"{SAI}, MIT,")
    assert InferenceSettings(keyring=KEYRING).accept_model_licences == [SAI, "MIT"]


class Repository:
    """TritonPool.repository() on a fixed list; no instance has loaded anything (``instances``)."""

    def __init__(self, models: list[str]) -> None:
        self.models, self.instances = models, []

    async def repository(self) -> list[str]:
        return self.models


async def test_the_worker_report_leaves_a_withheld_model_out_of_the_available_set_and_says_why(caplog):
    redis = FakeAsyncRedis(server=FakeServer())
    directory = ModelDirectory(redis)
    settings = InferenceSettings(keyring=KEYRING)
    report = inference_main.reporter(Repository(["u2netp", "sd_turbo"]), directory, redis, settings, REGISTRY)
    with caplog.at_level(logging.WARNING, "photocraft.inference"):
        await report()
        await report()
    assert await directory.available() == {"u2netp"}
    published = await directory.licences()
    assert set(published) == {"u2netp", "sd_turbo"} and not published["u2netp"].withheld
    assert published["u2netp"].licence_id == "Apache-2.0" and published["u2netp"].commercial_use
    assert ACCEPT_SETTING in published["sd_turbo"].withheld
    assert [r.getMessage() for r in caplog.records].count(
        f"model sd_turbo is in Triton's repository but not served: {published['sd_turbo'].withheld}") == 1

    opted_in = settings.model_copy(update={"accept_model_licences": [SAI]})
    await inference_main.reporter(Repository(["sd_turbo"]), directory, redis, opted_in, REGISTRY)()
    assert "sd_turbo" in await directory.available() and not (await directory.licences())["sd_turbo"].withheld
    await redis.aclose()


async def test_lapsed_licence_reports_are_not_listed():
    directory = ModelDirectory(FakeAsyncRedis(server=FakeServer()))
    await directory.publish_licences(licences(REGISTRY, ["u2netp"], []), ttl_s=-1)
    assert await directory.licences() == {}


async def test_the_pool_refuses_a_withheld_model_before_any_triton_call():
    pool = TritonPool(InferenceSettings(keyring=KEYRING), None, {}, gate(REGISTRY, []))  # no instance connected
    with pytest.raises(ModelUnavailable, match=f"model sd_turbo is withheld: .*{ACCEPT_SETTING}"):
        await pool.stream("sd_turbo", {}, "IMAGE", on_partial=None)
    with pytest.raises(ModelUnavailable, match="withheld"):
        await pool.config("sd_turbo")


async def test_a_worker_pinning_a_withheld_model_refuses_to_start():
    settings = InferenceSettings(keyring=KEYRING, residency=ResidencySettings(pinned=["u2netp", "sd_turbo"]))
    with pytest.raises(ValueError, match="PINNED names a model that is not served: .*sd_turbo"):
        inference_main.create_app(settings)


@pytest.fixture
def gateway():
    gateway = Gateway()
    with TestClient(create_app(GatewaySettings(keyring=KEYRING), gateway.connect)) as gateway.http:
        yield gateway


def publish(gateway: Gateway, present: list[str], accepted: list[str]) -> None:
    """What a worker whose Triton holds ``present`` reports, accepting the ``accepted`` licence ids."""
    entries = licences(REGISTRY, present, accepted)
    gateway.call(gateway.platform.models.publish_available, [e.model for e in entries if not e.withheld], 60.0)
    gateway.call(gateway.platform.models.publish_licences, entries, 60.0)


def test_get_models_lists_the_served_models_with_licences_and_the_withheld_apart(gateway):
    publish(gateway, list(REGISTRY), [])
    response = gateway.http.get("/v1/models")

    assert response.status_code == 200, response.text
    body = response.json()
    served = {m["model"]: m for m in body["served"]}
    assert list(served) == sorted(set(REGISTRY) - {"sd_turbo"})
    assert served["u2netp"] == {"model": "u2netp", "licence_id": "Apache-2.0", "licence": "Apache-2.0",
                                "commercial_use": True, "operations": ["remove-background"], "withheld": ""}
    assert {m["licence_id"] for m in served.values()} == {"Apache-2.0", "MIT", "BSD-3-Clause", "BSD-2-Clause"}
    [withheld] = body["withheld"]
    assert (withheld["model"], withheld["licence_id"], withheld["commercial_use"]) == ("sd_turbo", SAI, False)
    assert ACCEPT_SETTING in withheld["withheld"]


def test_get_models_with_the_opt_in_serves_the_non_commercial_model_and_flags_it(gateway):
    publish(gateway, ["u2netp", "sd_turbo"], [SAI])
    body = gateway.http.get("/v1/models").json()
    assert [(m["model"], m["commercial_use"]) for m in body["served"]] == [("sd_turbo", False), ("u2netp", True)]
    assert body["withheld"] == []


def test_a_served_model_without_a_licence_report_says_so(gateway):
    gateway.call(gateway.platform.models.publish_available, ["u2netp"], 60.0)
    [entry] = gateway.http.get("/v1/models").json()["served"]
    assert (entry["model"], entry["licence_id"], entry["commercial_use"]) == ("u2netp", "NOASSERTION", False)


def test_a_text_to_image_job_on_a_withheld_model_is_refused_naming_the_licence(gateway):
    publish(gateway, list(REGISTRY), [])
    response = gateway.http.post("/v1/jobs", data={"operation": "text-to-image", "params": '{"prompt": "a cat"}'},
                                 headers={"Authorization": f"Bearer {gateway.api_key('acme')}"})
    detail = assert_problem(response, 503, "model-not-installed")["detail"]
    assert "sd_turbo is withheld" in detail and SAI in detail and ACCEPT_SETTING in detail
