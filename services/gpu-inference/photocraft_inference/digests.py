"""The weights digests of the models Triton has loaded now: the scheduler reuses results only under them.

A stage result is addressed by its model's ``photocraft.weights`` digest (models/weights.py: weights, config
and code; photocraft_common.reuse). A worker records a model's digest when it loads it; but a Triton that
restarts has loaded nothing, maybe from a changed repository, and a digest left in Redis from before would let
the scheduler reuse results of the old code, so that the model is never loaded again to correct it. So each
availability report also records the digest of every model READY on a healthy instance, from the config it
serves, and drops the others: a model that is not loaded anywhere has its results recomputed (and its digest
recorded again) when a worker next loads it.
"""

from __future__ import annotations

from collections.abc import Iterable

from tritonclient.utils import InferenceServerException

from .triton import ready_models

DIGEST = "photocraft.weights"  # the config parameter models/weights.py appends


def digest_of(config: dict) -> str:
    """The weights digest in a model's Triton ``config`` (JSON form), "" when it has none."""
    return config.get("parameters", {}).get(DIGEST, {}).get("string_value", "")


async def loaded_digests(instances: Iterable) -> dict[str, str]:
    """model -> digest for every model READY on one of the healthy ``instances`` (triton.Instance); the first
    instance that has a model loaded gives its digest. An instance that fails to answer is left out (the next
    report asks again), as is a model unloaded between the index and its config."""
    digests: dict[str, str] = {}
    for instance in instances:
        if not instance.healthy:
            continue
        try:
            loaded = await ready_models(instance.client)
        except InferenceServerException:
            continue
        for name in sorted(loaded - digests.keys()):
            try:
                config = (await instance.client.get_model_config(name, as_json=True))["config"]
            except InferenceServerException:
                continue
            if digest := digest_of(config):
                digests[name] = digest
    return digests
