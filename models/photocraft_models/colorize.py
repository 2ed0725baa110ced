"""Automatic colorization: Zhang, Isola, Efros, "Colorful Image Colorization", ECCV 2016.

The network predicts, from the lightness L of a 256x256 CIELAB image, a
distribution over 313 quantised ab colours per pixel (at 1/4 resolution); a
1x1 convolution turns it into ab, upsampled x4 and scaled by 110. The layer
layout follows the authors' PyTorch release (richzhang/colorization,
BSD-2-Clause) so that its weights, ``colorization_release_v2-9b330a0b.pth``,
load by name.

Lab pipeline: L of the full-size photo; the network sees L resized to
256x256; its ab is resized back to the photo's size and merged with the
full-resolution L, so the output keeps every detail of the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage import color, transform
from torch import nn

from .devices import AUTO, Placement, torch_device
from .serving import Output

NETWORK_SIDE = 256  # pixels
WEIGHTS = "colorization_release_v2.pth"


def _stack(layers: list[tuple[int, int, int, int]], norm: bool = True) -> nn.Sequential:
    """3x3 convolutions (in, out, stride, dilation), each followed by ReLU, then batch norm."""
    modules: list[nn.Module] = []
    for c_in, c_out, stride, dilation in layers:
        modules += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
                    nn.ReLU(inplace=True)]
    if norm:
        modules.append(nn.BatchNorm2d(layers[-1][1]))
    return nn.Sequential(*modules)


class ECCV16(nn.Module):
    """The ECCV 2016 network: ``(N, 1, 256, 256)`` L in 0..100 -> ``(N, 2, 256, 256)`` ab."""

    def __init__(self) -> None:
        super().__init__()
        self.model1 = _stack([(1, 64, 1, 1), (64, 64, 2, 1)])
        self.model2 = _stack([(64, 128, 1, 1), (128, 128, 2, 1)])
        self.model3 = _stack([(128, 256, 1, 1), (256, 256, 1, 1), (256, 256, 2, 1)])
        self.model4 = _stack([(256, 512, 1, 1), (512, 512, 1, 1), (512, 512, 1, 1)])
        self.model5 = _stack([(512, 512, 1, 2)] * 3)  # dilated: a wider view without downsampling
        self.model6 = _stack([(512, 512, 1, 2)] * 3)
        self.model7 = _stack([(512, 512, 1, 1)] * 3)
        self.model8 = nn.Sequential(
            nn.ConvTranspose2d(512, 256, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            *_stack([(256, 256, 1, 1), (256, 256, 1, 1)], norm=False),
            nn.Conv2d(256, 313, 1),  # scores over the 313 quantised ab colours
        )
        self.model_out = nn.Conv2d(313, 2, 1, bias=False)  # expected ab of the distribution

    def forward(self, lightness: torch.Tensor) -> torch.Tensor:
        x = (lightness - 50.0) / 100.0
        for block in (self.model1, self.model2, self.model3, self.model4,
                      self.model5, self.model6, self.model7, self.model8):
            x = block(x)
        ab = self.model_out(torch.softmax(x, dim=1))
        return nn.functional.interpolate(ab, scale_factor=4, mode="bilinear") * 110.0


class Colorize:
    """Filter: ``(H, W, 3) uint8`` (colour or gray) -> ``(H, W, 3) uint8 RGB`` with predicted colours.

    Weights: ``colorization_release_v2.pth`` in the model's version folder.
    Runs on the CUDA device ``placement`` chooses (devices.torch_device), else on the CPU.
    """

    runtime = "torch"

    def __init__(self, version_dir: Path, parameters: dict[str, str], placement: Placement = AUTO) -> None:
        self.torch_device, self.device = torch_device(placement)
        self.network = ECCV16()
        state = torch.load(version_dir / WEIGHTS, map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.eval().to(self.torch_device)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, params: dict) -> Output:
        lightness = color.rgb2lab(image)[..., 0]  # 0..100, full resolution
        small = transform.resize(lightness, (NETWORK_SIDE, NETWORK_SIDE), order=1, anti_aliasing=True)
        tensor = torch.from_numpy(small.astype(np.float32))[None, None].to(self.torch_device)
        ab = self.network(tensor)[0].cpu().numpy().transpose(1, 2, 0)  # (256, 256, 2)
        ab_full = transform.resize(ab, lightness.shape, order=1)
        lab = np.concatenate([lightness[..., None], ab_full], axis=2)
        rgb = color.lab2rgb(lab)
        return Output(np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8))


def random_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Write an ECCV16 checkpoint with random weights (plumbing tests only) and return its path."""
    torch.manual_seed(seed)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS
    torch.save(ECCV16().state_dict(), path)
    return path
