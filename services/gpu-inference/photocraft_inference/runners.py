"""How gpu-inference calls each kind of model (declared by the model's config
parameter ``photocraft.kind``; see models/photocraft_models/serving.py).

A runner gets the stage's decoded input (None for generators), the stage's
parameters and a progress callback, and returns what the stage produced.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from photocraft_common.images import Decoded
from photocraft_common.no_ops import leaves_unchanged

from .matting import cut_out
from .tiling import parse, run_tiled
from .triton import TritonPool, json_tensor, read_json

Progress = Callable[[float, str], Awaitable[None]]


@dataclass
class Produced:
    image: np.ndarray | None  # (H, W, 3|4) uint8; None for an analysis
    mask: np.ndarray | None = None  # (H, W) uint8: the pixels the stage may have changed
    info: dict = field(default_factory=dict)


def _with_alpha(rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """Re-attach the input's transparency, scaled to the output's size."""
    if alpha is None:
        return rgb
    height, width = rgb.shape[:2]
    resized = np.asarray(Image.fromarray(alpha).resize((width, height), Image.Resampling.BILINEAR))
    return np.dstack([rgb, resized])


def _fixed_side(config: dict) -> tuple[int, int] | None:
    """(height, width) when the model takes images of one size only."""
    dims = [int(d) for d in config["input"][0]["dims"]]
    return (dims[0], dims[1]) if dims[0] > 0 and dims[1] > 0 else None


def unchanging(model: str, config: dict, params: dict) -> bool:
    """Whether a filter stage on ``model`` (its Triton ``config``) with ``params`` would return its input as it
    is (photocraft_common.no_ops) and nothing else: a model that also outputs a MASK is still run for it."""
    return leaves_unchanged(model, params) and all(out["name"] != "MASK" for out in config["output"])


def unchanged(source: Decoded) -> Produced:
    """What an ``unchanging`` filter stage produces: its input, transparency and all."""
    return Produced(_with_alpha(source.rgb, source.alpha))


async def run_filter(triton: TritonPool, model: str, config: dict, source: Decoded, params: dict,
                     progress: Progress) -> Produced:
    """A filter; images larger than the model's ``photocraft.tile`` go through in tiles."""
    tiling = config["parameters"].get("photocraft.tile", {}).get("string_value")
    if tiling and max(source.rgb.shape[:2]) > parse(tiling)[0]:
        async def window(pixels: np.ndarray) -> np.ndarray:
            inputs = {"IMAGE": pixels[np.newaxis], "PARAMS": json_tensor(params)}
            return (await triton.infer(model, inputs, ["IMAGE"]))["IMAGE"][0]

        image = await run_tiled(source.rgb, *parse(tiling), window)
        await progress(0.8, f"{model} done")
        return Produced(_with_alpha(image, source.alpha))
    names = [out["name"] for out in config["output"]]
    result = await triton.infer(model, {"IMAGE": source.rgb[np.newaxis], "PARAMS": json_tensor(params)}, names)
    await progress(0.8, f"{model} done")
    mask = result["MASK"][0] if "MASK" in result else None
    return Produced(_with_alpha(result["IMAGE"][0], source.alpha), mask, read_json(result["INFO"]))


async def run_segmenter(triton: TritonPool, model: str, config: dict, source: Decoded, params: dict,
                        progress: Progress) -> Produced:
    image = source.rgb
    side = _fixed_side(config)
    if side:
        image = await asyncio.to_thread(
            lambda: np.asarray(Image.fromarray(source.rgb).resize(side[::-1], Image.Resampling.LANCZOS)))
    mask = (await triton.infer(model, {"IMAGE": image[np.newaxis]}, ["MASK"]))["MASK"][0]
    await progress(0.7, "mask predicted")
    return Produced(await asyncio.to_thread(cut_out, source.rgb, mask, params))


async def run_analyzer(triton: TritonPool, model: str, config: dict, source: Decoded, params: dict,
                       progress: Progress) -> Produced:
    result = await triton.infer(model, {"IMAGE": source.rgb[np.newaxis], "PARAMS": json_tensor(params)},
                                ["INFO"])
    await progress(0.9, "analysed")
    return Produced(None, info=read_json(result["INFO"]))


async def run_generator(triton: TritonPool, model: str, config: dict, source: Decoded | None, params: dict,
                        progress: Progress) -> Produced:
    async def on_step(info: dict) -> None:
        await progress(0.05 + 0.85 * info["step"] / info["steps"], f"step {info['step']} of {info['steps']}")

    image = await triton.stream(model, {"PARAMS": json_tensor(params).reshape(1)}, "IMAGE", on_step)
    return Produced(image)


RUNNERS: dict[str, Callable[..., Awaitable[Produced]]] = {
    "filter": run_filter, "segmenter": run_segmenter, "analyzer": run_analyzer, "generator": run_generator,
}
