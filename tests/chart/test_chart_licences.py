"""The chart's opt-in to non-commercial models (issue 16): off by default, one value, passed to gpu-inference.

Runs `helm` (var/bin/helm); needs no cluster.
"""

from __future__ import annotations

import pytest

from photocraft_common.keyring import Keyring
from photocraft_inference.settings import InferenceSettings

from .helm import CHART, GPU, LOCAL, PRODUCTION, containers, env, find, helm, render, value_args

SAI = "LicenseRef-sai-nc-community"
SETTING = "PHOTOCRAFT_ACCEPT_MODEL_LICENCES"


def accepted(manifests: list[dict]) -> str:
    """The value of the setting in the gpu-inference container."""
    [deployment] = find(manifests, "Deployment", "-gpu-inference")
    [worker] = [c for c in containers(deployment) if c["name"] == "gpu-inference"]
    return env(worker)[SETTING]["value"]


@pytest.mark.parametrize("files", [PRODUCTION, GPU, LOCAL], ids=["production", "gpu", "local"])
def test_by_default_no_non_commercial_licence_is_accepted(files):
    value = accepted(render(files))
    assert value == ""
    assert InferenceSettings.model_validate({"accept_model_licences": value, "keyring": Keyring.generate()}
                                            ).accept_model_licences == []


def test_the_value_reaches_gpu_inference_as_its_setting():
    value = accepted(render(PRODUCTION, {"gpuInference.acceptModelLicences": f"{{{SAI},MIT}}"}))
    assert value == f"{SAI},MIT"
    assert InferenceSettings.model_validate({"accept_model_licences": value, "keyring": Keyring.generate()}
                                            ).accept_model_licences == [SAI, "MIT"]


@pytest.mark.parametrize("bad", ["{sai nc}", "{*}", "LicenseRef-sai-nc-community"])
def test_the_schema_rejects_what_is_not_a_list_of_licence_ids(bad):
    result = helm("template", "pc", str(CHART), *value_args(PRODUCTION, {"gpuInference.acceptModelLicences": bad}),
                  check=False)
    assert result.returncode != 0 and "/gpuInference/acceptModelLicences" in result.stderr
