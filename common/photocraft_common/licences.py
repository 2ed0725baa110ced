"""Model licences: which models of models/registry.toml the platform may serve (issue 16).

Every registry model states ``licence`` (prose), ``licence_id`` (an SPDX licence expression; a licence without an
SPDX id is ``LicenseRef-<name>``, e.g. ``LicenseRef-sai-nc-community`` for SD-Turbo) and ``commercial_use``
(whether its licence allows commercial use). A model whose licence forbids commercial use is served only where the
operator accepts that licence by its id (gpu-inference's ``PHOTOCRAFT_ACCEPT_MODEL_LICENCES``); otherwise it is
*withheld*: gpu-inference neither loads nor advertises it, and the gateway's ``GET /v1/models`` and its refusals say
why. scripts/licences.py (THIRD_PARTY.md) reads ``commercial_use`` through ``commercial_use`` below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from pydantic import BaseModel, Field

ACCEPT_SETTING = "PHOTOCRAFT_ACCEPT_MODEL_LICENCES"


class ModelLicence(BaseModel):
    """One model's licence, as gpu-inference publishes it and ``GET /v1/models`` answers it."""

    model: str = Field(description="the Triton model's name", examples=["u2netp"])
    licence_id: str = Field(description="SPDX licence expression (LicenseRef-<name> where SPDX has no id)",
                            examples=["Apache-2.0"])
    licence: str = Field(description="the licence in words, with any conditions on the weights")
    commercial_use: bool = Field(description="whether the licence allows commercial use")
    operations: list[str] = Field(description="the operations that use the model", examples=[["remove-background"]])
    withheld: str = Field("", description="why the platform does not serve the model; empty when it does")


def commercial_use(entry: Mapping) -> bool:
    """A registry entry's ``commercial_use``. Raises ValueError when it is missing or not a boolean: whether a
    model may be served commercially is never guessed."""
    value = entry.get("commercial_use")
    if not isinstance(value, bool):
        raise ValueError(f"commercial_use must be true or false in the model registry, not {value!r}")
    return value


def accepted_ids(values: Iterable[str]) -> frozenset[str]:
    """Licence ids as an operator lists them (blank entries dropped), compared case-insensitively as SPDX ids are."""
    return frozenset(v.strip().lower() for v in values if v.strip())


def withheld_reason(licence_id: str, commercial: bool, accepted: Iterable[str]) -> str:
    """Why a model under ``licence_id`` is withheld given the ``accepted`` licence ids, or "" when it may be served:
    a licence that allows commercial use is always served; one that does not, only when accepted."""
    if commercial or licence_id.lower() in accepted_ids(accepted):
        return ""
    return (f"its licence, {licence_id}, does not allow commercial use, and this platform's operator has not "
            f"accepted it ({ACCEPT_SETTING}={licence_id} serves it)")


def model_licence(name: str, entry: Mapping, accepted: Iterable[str] = ()) -> ModelLicence:
    """``name``'s licence from its registry ``entry``, withheld or not given the ``accepted`` ids. Raises ValueError
    naming the model when ``licence_id`` or ``commercial_use`` is missing."""
    try:
        commercial = commercial_use(entry)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    if not entry.get("licence_id"):
        raise ValueError(f"{name}: licence_id missing in the model registry")
    return ModelLicence(model=name, licence_id=entry["licence_id"], licence=entry.get("licence", ""),
                        commercial_use=commercial, operations=list(entry.get("operations", [])),
                        withheld=withheld_reason(entry["licence_id"], commercial, accepted))


def unregistered(name: str) -> ModelLicence:
    """A model Triton holds that the registry does not name: its licence is unknown, so it is withheld."""
    return ModelLicence(model=name, licence_id="NOASSERTION", licence="unknown", commercial_use=False, operations=[],
                        withheld="it is not in the model registry, so its licence is unknown")


def licences(registry: Mapping[str, Mapping], models: Iterable[str], accepted: Iterable[str]) -> list[ModelLicence]:
    """The licence of each of ``models`` (e.g. those in Triton's repository), by name, from ``registry`` (the
    parsed ``models`` table of models/registry.toml), each withheld or not given the ``accepted`` licence ids.
    Raises ValueError for a registry entry without its licence fields."""
    return [model_licence(m, registry[m], accepted) if m in registry else unregistered(m) for m in sorted(set(models))]


def servable(registry: Mapping[str, Mapping], models: Iterable[str], accepted: Iterable[str]) -> list[str]:
    """Those of ``models`` the platform may serve given the ``accepted`` licence ids."""
    return [entry.model for entry in licences(registry, models, accepted) if not entry.withheld]


def gate(registry: Mapping[str, Mapping], accepted: Iterable[str]) -> Callable[[str], str]:
    """``withheld(model)``: why ``model`` must not be served given the ``accepted`` licence ids, "" when it may be.
    Raises ValueError now for a registry entry without its licence fields, rather than on each request."""
    accepted = list(accepted)
    licences(registry, registry, accepted)
    return lambda model: licences(registry, [model], accepted)[0].withheld
