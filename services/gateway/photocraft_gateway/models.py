"""``GET /v1/models``: the models this platform serves now, each with its licence, and those it withholds.

gpu-inference workers publish both in Redis (photocraft_common.models.ModelDirectory: the available set, and the
licence of every model in Triton's repository, from models/registry.toml); the gateway reads only that, never the
registry. A model whose licence forbids commercial use is withheld unless the workers' operator accepts its licence
(``PHOTOCRAFT_ACCEPT_MODEL_LICENCES``; docs/models.md, "Model licences"). Anyone may ask: the answer says what the
operations run on, nothing about any tenant.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from fastapi import APIRouter
from pydantic import BaseModel, Field

from photocraft_common.licences import ModelLicence

from .deps import PlatformDep
from .problems import responses

router = APIRouter()
UNREPORTED = "NOASSERTION"  # SPDX's word for a licence nobody stated


class ModelsView(BaseModel):
    served: list[ModelLicence] = Field(description="every model served now, by name")
    withheld: list[ModelLicence] = Field(description="models installed but not served, by name; `withheld` says why")


def models_view(available: set[str], licences: Mapping[str, ModelLicence]) -> ModelsView:
    """The answer, from the available set and the licences the workers published. A served model no worker
    reported a licence for (a worker older than this gateway) is listed with licence id NOASSERTION; a model
    one worker withholds and another serves is served."""
    served = [licences[m].model_copy(update={"withheld": ""}) if m in licences else
              ModelLicence(model=m, licence_id=UNREPORTED, licence="not reported by any gpu-inference worker",
                           commercial_use=False, operations=[])
              for m in sorted(available)]
    withheld = [e for m, e in sorted(licences.items()) if e.withheld and m not in available]
    return ModelsView(served=served, withheld=withheld)


@router.get("/v1/models", response_model=ModelsView, responses=responses(404, 405, 429, 500, 503))
async def list_models(p: PlatformDep) -> ModelsView:
    """The models served now, each with its licence (SPDX id and text), whether that allows commercial use and
    the operations that use it; and the models withheld for their licence, with the reason."""
    available, licences = await asyncio.gather(p.models.available(), p.models.licences())
    return models_view(available, licences)
