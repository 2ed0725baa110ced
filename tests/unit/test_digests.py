"""gpu-inference records the weights digests of the models Triton has loaded now (digests.py)."""

from __future__ import annotations

from dataclasses import dataclass

from fakeredis import FakeAsyncRedis
from tritonclient.utils import InferenceServerException

from photocraft_common.models import ModelDirectory
from photocraft_inference.digests import digest_of, loaded_digests


def config(digest: str | None) -> dict:
    parameters = {"photocraft.weights": {"string_value": digest}} if digest else {}
    return {"name": "m", "parameters": {"photocraft.kind": {"string_value": "filter"}, **parameters}}


class FakeClient:
    def __init__(self, models: dict[str, tuple[str, str | None]], down: bool = False) -> None:
        self.models, self.down = models, down  # name -> (state, digest)

    async def get_model_repository_index(self, as_json: bool = False) -> dict:
        if self.down:
            raise InferenceServerException("unreachable")
        return {"models": [{"name": n, "state": s} for n, (s, _) in self.models.items()]}

    async def get_model_config(self, name: str, as_json: bool = False) -> dict:
        state, digest = self.models[name]
        if state != "READY":
            raise InferenceServerException(f"{name} is not loaded")
        return {"config": config(digest)}


@dataclass
class FakeInstance:
    client: FakeClient
    healthy: bool = True


def test_the_digest_is_read_from_the_config():
    assert digest_of(config("abc123")) == "abc123"
    assert digest_of(config(None)) == "" and digest_of({}) == ""


async def test_only_models_ready_on_a_healthy_instance_have_digests():
    first = FakeInstance(FakeClient({"u2netp": ("READY", "new"), "oidn": ("UNAVAILABLE", "old"),
                                     "tone": ("READY", None)}))
    second = FakeInstance(FakeClient({"u2netp": ("READY", "other"), "retouch": ("READY", "r1")}))
    sick = FakeInstance(FakeClient({"selfie": ("READY", "s1")}), healthy=False)
    down = FakeInstance(FakeClient({"inpaint": ("READY", "i1")}, down=True))
    assert await loaded_digests([first, second, sick, down]) == {"u2netp": "new", "retouch": "r1"}
    assert await loaded_digests([]) == {}


async def test_the_recorded_digests_become_those_of_the_loaded_models():
    directory = ModelDirectory(FakeAsyncRedis())
    await directory.record_weights("u2netp", "before-the-upgrade")
    await directory.record_weights("oidn", "o1")
    await directory.keep_weights({"u2netp": "after-the-upgrade", "tone": "t1"})
    assert (await directory.weights("u2netp"), await directory.weights("tone")) == ("after-the-upgrade", "t1")
    assert await directory.weights("oidn") is None  # not loaded: its results wait for the next load
    await directory.keep_weights({})
    assert await directory.weights("u2netp") is None
