"""Text-to-image with a diffusers Stable Diffusion pipeline (SD-Turbo by default).

SD-Turbo (Sauer et al., "Adversarial Diffusion Distillation", 2023) is
Stable Diffusion 2.1 distilled to make an image in 1-4 steps without
classifier-free guidance. The pipeline is loaded from ``pipeline/`` in the
model's version folder (diffusers layout; fp16 weights are used when present
and computed in float32 on the CPU). Every denoising step is reported through
``on_step`` so that clients see progress.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .devices import AUTO, Placement, torch_device
from .params import integer, number
from .serving import InvalidInput

MAX_PIXELS = 1024 * 1024


def _text(params: dict, name: str, required: bool) -> str:
    value = params.get(name, "")
    if not isinstance(value, str) or len(value) > 1000 or (required and not value.strip()):
        raise InvalidInput(f"{name} must be {'a non-empty' if required else 'a'} string of at most 1000 characters")
    return value


class TextToImage:
    """Generator: PARAMS -> ``(height, width, 3) uint8 RGB``.

    PARAMS: ``prompt`` (required), ``negative_prompt`` (used only when
    ``guidance_scale`` > 1), ``seed`` (random when absent), ``steps`` 1..50
    (default 1), ``guidance_scale`` 0..20 (default 0, as SD-Turbo is trained),
    ``width`` and ``height`` multiples of 8, at most 1 MP in all (default 512).
    Runs in float16 on the CUDA device ``placement`` chooses, else in float32 on the CPU.
    """

    runtime = "torch"

    def __init__(self, version_dir: Path, parameters: dict[str, str], placement: Placement = AUTO) -> None:
        from diffusers import DiffusionPipeline

        source = version_dir / "pipeline"
        self.torch_device, self.device = torch_device(placement)
        cuda = self.torch_device != "cpu"
        fp16 = any(source.glob("unet/*.fp16.safetensors"))
        self.pipeline = DiffusionPipeline.from_pretrained(
            source, variant="fp16" if fp16 else None,
            dtype=torch.float16 if cuda else torch.float32,
            safety_checker=None, requires_safety_checker=False,
        ).to(self.torch_device)
        self.pipeline.set_progress_bar_config(disable=True)

    def __call__(self, params: dict, on_step: Callable[[int, int], None]) -> np.ndarray:
        prompt = _text(params, "prompt", required=True)
        negative = _text(params, "negative_prompt", required=False)
        steps = integer(params, "steps", 1, 1, 50)
        guidance = number(params, "guidance_scale", 0.0, 0.0, 20.0)
        width = integer(params, "width", 512, 8, 2048)
        height = integer(params, "height", 512, 8, 2048)
        if width % 8 or height % 8 or width * height > MAX_PIXELS:
            raise InvalidInput("width and height must be multiples of 8 with width x height <= 1 MP")
        seed = integer(params, "seed", secrets.randbelow(2**31), 0, 2**63 - 1)

        def step_end(pipeline, step: int, timestep, tensors: dict) -> dict:
            on_step(step + 1, steps)
            return tensors

        result = self.pipeline(
            prompt=prompt, negative_prompt=negative or None, num_inference_steps=steps,
            guidance_scale=guidance, width=width, height=height, output_type="np",
            generator=torch.Generator(self.torch_device).manual_seed(seed),
            callback_on_step_end=step_end,
        )
        return np.clip(result.images[0] * 255.0 + 0.5, 0, 255).astype(np.uint8)


def tiny_random_pipeline(directory: Path, seed: int = 0) -> Path:
    """Save a tiny Stable Diffusion pipeline with random weights (plumbing tests only).

    Same classes as SD-Turbo's (CLIP text encoder and tokenizer, UNet2DCondition,
    AutoencoderKL, Euler scheduler with trailing timesteps), a few MB in all.
    """
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    target = directory / "pipeline"
    vocabulary_dir = directory / "vocabulary"
    vocabulary_dir.mkdir(parents=True, exist_ok=True)
    vocabulary = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocabulary[letter] = len(vocabulary)
        vocabulary[letter + "</w>"] = len(vocabulary)
    (vocabulary_dir / "vocab.json").write_text(json.dumps(vocabulary))
    (vocabulary_dir / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(vocabulary_dir / "vocab.json"), str(vocabulary_dir / "merges.txt"),
                              model_max_length=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(vocabulary), hidden_size=32, intermediate_size=37, num_attention_heads=4,
        num_hidden_layers=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8)
    StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=EulerDiscreteScheduler(timestep_spacing="trailing"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(target)
    for leftover in vocabulary_dir.iterdir():
        leftover.unlink()
    vocabulary_dir.rmdir()
    return target
