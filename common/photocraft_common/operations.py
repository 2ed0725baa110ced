"""The operations clients can ask for, each a recipe of stages.

A stage runs on one Triton model. Stages form a dependency graph: a stage
starts once every stage it ``needs`` has completed, and takes their outputs
(or the job's input image when it needs nothing) as its inputs. The outputs
of the stages nothing depends on are the job's results.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["OPERATIONS", "Operation", "Stage", "UnknownOperation", "ValidationError", "get_operation"]


class UnknownOperation(LookupError):
    pass


class RemoveBackgroundParams(BaseModel):
    """``remove-background`` takes no parameters yet."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Stage:
    name: str
    model: str  # the Triton model; its tasks travel on photocraft.tasks.model.<model>
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    name: str
    params: type[BaseModel]
    stages: tuple[Stage, ...]
    description: str = ""
    takes_input: bool = True
    models: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(dict.fromkeys(s.model for s in self.stages)))

    def parse_params(self, raw: str | dict | None) -> BaseModel:
        """Validate client parameters; raises ValidationError (or ValueError for bad JSON)."""
        data = json.loads(raw) if isinstance(raw, str) else (raw or {})
        if not isinstance(data, dict):
            raise ValueError("params must be a JSON object")
        return self.params.model_validate(data)

    def ready_stages(self, done: set[str], started: set[str]) -> list[Stage]:
        """Stages not yet started whose every dependency is done."""
        return [s for s in self.stages
                if s.name not in started and s.name not in done and set(s.needs) <= done]

    def final_stages(self) -> list[Stage]:
        needed = {n for s in self.stages for n in s.needs}
        return [s for s in self.stages if s.name not in needed]


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in [
        Operation(
            name="remove-background",
            params=RemoveBackgroundParams,
            stages=(Stage("segment", "u2netp"),),
            description="Cut the subject out: an RGBA PNG whose alpha is the subject's mask.",
        ),
    ]
}


def get_operation(name: str) -> Operation:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise UnknownOperation(
            f"unknown operation {name!r}; known: {', '.join(sorted(OPERATIONS))}"
        ) from None
