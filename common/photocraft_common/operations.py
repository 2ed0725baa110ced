"""The operations clients can ask for: typed parameters and a recipe of stages.

Parameters are pydantic models, one per operation, told apart by their
``operation`` field (a discriminated union, ``JobParams``). An operation's
recipe turns validated parameters into stages. A stage runs on one Triton
model (the first of its ``models`` that is available) and starts once every
stage it ``needs`` has finished, taking their image outputs (or the job's
input when it needs nothing). Stages no other stage needs are the job's
results. A stage ``decided_by`` an analyzer stage runs only if that
analysis says so, with the parameters it adds; an ``optional`` stage whose
models are all missing is skipped with a warning.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

__all__ = ["MODELS", "OPERATIONS", "JobParams", "Operation", "Stage", "UnknownOperation", "ValidationError",
           "get_operation", "parse_params"]

MEGAPIXEL = 1_000_000

# Every Triton model a recipe may use; each has its topic photocraft.tasks.model.<name>.
MODELS = ("analyze", "colorize_eccv16", "gfpgan", "inpaint", "oidn", "realesrgan_x4plus", "retouch",
          "sd_turbo", "selfie", "tone", "u2netp", "waifu2x_dejpeg", "waifu2x_photo")


class UnknownOperation(LookupError):
    pass


# ---- parameters ------------------------------------------------------------------------------

class OutputOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: Literal["png", "jpeg", "webp"] = "png"
    quality: int = Field(92, ge=1, le=100, description="JPEG and WebP quality")

    @property
    def extension(self) -> str:
        return "jpg" if self.format == "jpeg" else self.format


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    output: OutputOptions = OutputOptions()


class EnhanceParams(_Params):
    operation: Literal["enhance"] = "enhance"
    scale: Literal[1, 2, 4] = Field(2, description="1: same size; 2: waifu2x; 4: see upscaler")
    upscaler: Literal["detailed", "faithful"] = Field(
        "detailed", description="for x4: detailed = Real-ESRGAN x4plus, sharp but with invented texture; "
                                "faithful = waifu2x twice, closer to the original (higher PSNR)")
    denoise: float = Field(0.5, ge=0, le=1, description="strength of Open Image Denoise; 0 skips it")
    contrast: float = Field(0.4, ge=0, le=1, description="local contrast (CLAHE on L)")
    saturation: float = Field(0.1, ge=-1, le=1)
    sharpen: float = Field(0.3, ge=0, le=1, description="unsharp mask on L")


class Transparent(BaseModel):
    type: Literal["transparent"] = "transparent"


class SolidColor(BaseModel):
    type: Literal["color"] = "color"
    color: str = Field("#ffffff", pattern=r"^#[0-9a-fA-F]{6}$", description="#rrggbb")


class Blurred(BaseModel):
    type: Literal["blur"] = "blur"
    radius: int = Field(25, ge=1, le=200, description="Gaussian blur of the background, pixels")


Background = Annotated[Transparent | SolidColor | Blurred, Field(discriminator="type")]


class RemoveBackgroundParams(_Params):
    operation: Literal["remove-background"] = "remove-background"
    subject: Literal["object", "person"] = Field(
        "object", description="object: U²-Net-p, any salient subject; person: MediaPipe selfie segmentation")
    background: Background = Transparent()
    refine: bool = Field(True, description="refine the mask's edges with a guided filter")

    @model_validator(mode="after")
    def _alpha_needs_a_format_with_alpha(self) -> RemoveBackgroundParams:
        if self.background.type == "transparent" and self.output.format == "jpeg":
            raise ValueError("a transparent background needs png or webp output, not jpeg")
        return self


class RetouchParams(_Params):
    operation: Literal["retouch"] = "retouch"
    skin: float = Field(0.5, ge=0, le=1, description="skin smoothing")
    teeth: float = Field(0.5, ge=0, le=1, description="teeth whitening")
    eyes: float = Field(0.5, ge=0, le=1, description="eye enhancement")


class RestoreParams(_Params):
    operation: Literal["restore"] = "restore"
    upscale: Literal[1, 2] = 1
    faces: bool = Field(True, description="enhance the faces found")
    colorize: bool = Field(True, description="colorize black-and-white photos, if colorization is installed")
    toning: Literal["remove", "keep"] = Field(
        "remove", description="a toned print (sepia, selenium, cyanotype): remove its tone (and colorize, if "
                              "installed and asked), or keep it")


class ColorizeParams(_Params):
    operation: Literal["colorize"] = "colorize"


class TextToImageParams(_Params):
    operation: Literal["text-to-image"] = "text-to-image"
    prompt: str = Field(min_length=1, max_length=1000)
    negative_prompt: str = Field("", max_length=1000, description="used when guidance_scale > 1")
    seed: int = Field(default_factory=lambda: secrets.randbelow(2**31), ge=0, lt=2**31)
    steps: int = Field(1, ge=1, le=50, description="denoising steps; SD-Turbo needs 1-4")
    guidance_scale: float = Field(0.0, ge=0, le=20)
    width: int = Field(512, ge=64, le=2048, multiple_of=8)
    height: int = Field(512, ge=64, le=2048, multiple_of=8)

    @model_validator(mode="after")
    def _at_most_one_megapixel(self) -> TextToImageParams:
        if self.width * self.height > 1024 * 1024:
            raise ValueError(f"width x height is {self.width * self.height} pixels; at most 1048576 (1 MP)")
        return self


JobParams = Annotated[
    EnhanceParams | RemoveBackgroundParams | RetouchParams | RestoreParams | ColorizeParams
    | TextToImageParams,
    Field(discriminator="operation"),
]
_JOB_PARAMS = TypeAdapter(JobParams)


# ---- recipes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stage:
    name: str
    models: tuple[str, ...]  # candidate Triton models, preferred first
    params: Mapping = field(default_factory=dict)  # sent to the model as PARAMS
    needs: tuple[str, ...] = ()
    optional: bool = False
    decided_by: str = ""  # the analyzer stage that decides whether this stage runs
    weight: float = 1.0  # share of the job's progress, relative


def _chain(*stages: Stage) -> tuple[Stage, ...]:
    """Stages in sequence: each needs the one before it."""
    return tuple(replace(stage, needs=(stages[i - 1].name,)) if i else stage
                 for i, stage in enumerate(stages))


def _enhance(p: EnhanceParams) -> tuple[Stage, ...]:
    waifu2x = Stage("upscale", ("waifu2x_photo",), {"noise": -1}, weight=3)
    upscalers = {1: (), 2: (waifu2x,),
                 4: (Stage("upscale", ("realesrgan_x4plus",), weight=6),) if p.upscaler == "detailed"
                 else (waifu2x, replace(waifu2x, name="upscale-2", weight=6))}[p.scale]
    return _chain(*[s for s in (
        Stage("denoise", ("oidn",), {"strength": p.denoise}) if p.denoise else None,
        *upscalers,
        Stage("tone", ("tone",), {"contrast": p.contrast, "saturation": p.saturation, "sharpen": p.sharpen}),
    ) if s])


def _remove_background(p: RemoveBackgroundParams) -> tuple[Stage, ...]:
    model = {"object": "u2netp", "person": "selfie"}[p.subject]
    return (Stage("segment", (model,), {"background": p.background.model_dump(), "refine": p.refine}),)


def _retouch(p: RetouchParams) -> tuple[Stage, ...]:
    return (Stage("retouch", ("retouch",), {"skin": p.skin, "teeth": p.teeth, "eyes": p.eyes}),)


def _restore(p: RestoreParams) -> tuple[Stage, ...]:
    decided = {"decided_by": "analyze"}
    return _chain(*[s for s in (
        Stage("analyze", ("analyze",), {"toning": p.toning}, weight=0.5),
        # scratches, dust and tears are found best on the photo as it came, before denoising smooths them
        Stage("descratch", ("inpaint",), **decided),
        Stage("denoise", ("oidn",), **decided),
        Stage("dejpeg", ("waifu2x_dejpeg",), weight=2, **decided),
        # faded dyes, colour cast, toning: its analysis gives the parameters
        Stage("balance", ("tone",), {"contrast": 0.0, "saturation": 0.0, "sharpen": 0.0}, **decided),
        Stage("upscale", ("waifu2x_photo",), {"noise": -1}, weight=3) if p.upscale == 2 else None,
        # GFPGAN when installed, else a light retouch of the faces found.
        Stage("faces", ("gfpgan", "retouch"), {"skin": 0.3, "teeth": 0.0, "eyes": 0.3}, **decided)
        if p.faces else None,
        Stage("colorize", ("colorize_eccv16",), optional=True, weight=2, **decided) if p.colorize else None,
        Stage("tone", ("tone",), {"contrast": 0.0, "saturation": 0.0, "sharpen": 0.0}, **decided),
    ) if s])


def _colorize(p: ColorizeParams) -> tuple[Stage, ...]:
    return (Stage("colorize", ("colorize_eccv16",)),)


def _text_to_image(p: TextToImageParams) -> tuple[Stage, ...]:
    params = p.model_dump(include={"prompt", "negative_prompt", "seed", "steps", "guidance_scale",
                                   "width", "height"})
    return (Stage("generate", ("sd_turbo",), params, weight=p.steps),)


@dataclass(frozen=True)
class Operation:
    name: str
    params: type[_Params]
    recipe: Callable[[_Params], tuple[Stage, ...]]
    description: str
    takes_input: bool = True
    max_input_megapixels: Callable[[_Params], float] = lambda p: 50

    def stages(self, params: _Params) -> tuple[Stage, ...]:
        return self.recipe(params)

    def missing_models(self, params: _Params, available: set[str]) -> list[str]:
        """The models a job with ``params`` needs and cannot have: for each required
        stage none of whose models is available, the one it prefers."""
        return [s.models[0] for s in self.stages(params)
                if not s.optional and not available.intersection(s.models)]


OPERATIONS: dict[str, Operation] = {op.name: op for op in [
    Operation("enhance", EnhanceParams, _enhance,
              "Denoise (Open Image Denoise), upscale x2 (waifu2x) or x4 (Real-ESRGAN, or waifu2x twice), "
              "then tone and colour.",
              max_input_megapixels=lambda p: {1: 50, 2: 12, 4: 3}[p.scale]),
    Operation("remove-background", RemoveBackgroundParams, _remove_background,
              "Cut the subject out; transparent, solid-colour or blurred background."),
    Operation("retouch", RetouchParams, _retouch,
              "Skin smoothing, teeth whitening and eye enhancement on every face."),
    Operation("restore", RestoreParams, _restore,
              "Analyse the photo, then repair scratches, dust and tears, denoise, remove JPEG artefacts, "
              "restore faded or toned prints, upscale, enhance faces and colorize, as it needs.",
              max_input_megapixels=lambda p: {1: 50, 2: 12}[p.upscale]),
    Operation("colorize", ColorizeParams, _colorize,
              "Colorize a black-and-white photo (Zhang et al., ECCV 2016)."),
    Operation("text-to-image", TextToImageParams, _text_to_image,
              "Generate a picture from a prompt (SD-Turbo).", takes_input=False),
]}


def get_operation(name: str) -> Operation:
    try:
        return OPERATIONS[name]
    except KeyError:
        raise UnknownOperation(
            f"unknown operation {name!r}; known: {', '.join(sorted(OPERATIONS))}"
        ) from None


def parse_params(operation: str, raw: str | dict | None) -> _Params:
    """Validate a client's parameters for ``operation``.

    Raises UnknownOperation, ValidationError, or ValueError for JSON that is
    not an object.
    """
    get_operation(operation)
    data = json.loads(raw) if isinstance(raw, str) and raw.strip() else (raw or {})
    if not isinstance(data, dict):
        raise ValueError("params must be a JSON object")
    return _JOB_PARAMS.validate_python({**data, "operation": operation})
