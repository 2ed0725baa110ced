"""Results are reused only under the weights digest of a model loaded now (gpu-inference digests.py).

A digest left in Redis from before an upgrade (Triton restarted on changed code or weights) let the scheduler
reuse results of the old model and never load the new one. The workers' availability report now replaces the
recorded digests with those of the models Triton has loaded, and drops the rest."""

from __future__ import annotations

import asyncio
import re
import time

from photocraft_common.models import WEIGHTS

from .helpers import REPOSITORY, fresh, job_events, png_bytes

STALE = "digest-before-an-upgrade"
REPORT_S = 5.0  # gpu-inference's availability_interval_s


def served_digest(model: str) -> str:
    """The digest in the config Triton serves ``model`` with (models/weights.py appends it)."""
    text = (REPOSITORY / model / "config.pbtxt").read_text()
    return re.search(r'key: "photocraft.weights" value \{ string_value: "([^"]+)" \}', text).group(1)


async def test_a_digest_from_before_an_upgrade_is_replaced_and_an_unloaded_models_dropped(gateway, redis, astronaut):
    events = await job_events(gateway, "remove-background", {}, png_bytes(fresh(astronaut[:128, :128])))
    assert events[-1]["type"] == "completed", events[-1]  # u2netp is loaded now
    await redis.hset(WEIGHTS, mapping={"u2netp": STALE, "model-not-loaded": STALE})
    deadline = time.monotonic() + 3 * REPORT_S
    while time.monotonic() < deadline:
        recorded = await redis.hmget(WEIGHTS, ["u2netp", "model-not-loaded"])
        if recorded[0] != STALE.encode() and recorded[1] is None:
            break
        await asyncio.sleep(0.5)
    u2netp, not_loaded = await redis.hmget(WEIGHTS, ["u2netp", "model-not-loaded"])
    assert not_loaded is None
    # u2netp's own digest, unless residency unloaded it meanwhile (then none: recomputed at its next load)
    assert u2netp in (served_digest("u2netp").encode(), None), u2netp
