"""A job's report: what its analysis measured and what each stage of its recipe did and why (docs/api.md).

A job whose recipe has an analysis stage (restore) gets one as a result of its own: role ``report``,
``application/json``, stored beside its other results and purged with them. The scheduler builds it
(photocraft_scheduler.report); the gateway, the SDK and the web page read it with this schema.
``schema`` is its version: a change that would break a reader makes a new one.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ROLE, CONTENT_TYPE, SCHEMA = "report", "application/json", 1


class StageReport(BaseModel):
    """One stage of the recipe, in recipe order."""

    stage: str
    status: Literal["ran", "reused", "skipped", "not-run"]  # reused: an earlier identical result, nothing computed
    model: str = ""  # the Triton model it ran on; "" when skipped
    params: dict[str, Any] = {}  # as sent to the model (its recipe's, plus what its analysis added)
    reason: str  # why it ran or was skipped, for people
    info: dict[str, Any] = {}  # what the model reported (its INFO output), e.g. descratch's defect counts
    changed: bool = False  # whether it changed the photo (a stage run with every strength at 0 did not)
    warnings: list[str] = []


class NotInstalled(BaseModel):
    """A stage whose preferred model is not installed on this platform."""

    stage: str
    model: str  # the model that is not installed
    instead: str = ""  # the model that ran in its place; "" when the stage was skipped
    effect: str  # what the job got instead, for people


class JobReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_version: Literal[1] = Field(SCHEMA, alias="schema")
    job_id: str
    operation: str
    params: dict[str, Any]  # the job's parameters, defaults filled in
    analysis: dict[str, Any] | None = None  # the analysis stage's output as it came (docs/models.md)
    findings: list[str] = []  # what the analysis found, for people
    stages: list[StageReport]
    not_installed: list[NotInstalled] = []
    warnings: list[str] = []  # the job's warnings, as in its completed event

    def to_json(self) -> bytes:
        """The report as stored: UTF-8 JSON, with ``schema`` first."""
        return self.model_dump_json(by_alias=True).encode()
