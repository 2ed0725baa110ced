"""Face restoration with GFPGAN v1.4 (Wang, Li, Zhang, Shan, "Towards Real-World
Blind Face Restoration with Generative Facial Prior", CVPR 2021; TencentARC,
Apache-2.0), its architecture loaded by spandrel.

Per face: five landmarks (eye centres, nose tip, mouth corners, from
``landmarks.FaceFinder``) fix a similarity transform onto the 512x512 FFHQ
alignment template; the aligned face is restored (the network works in
[-1, 1]), blended with the aligned original by ``strength``, warped back and
pasted through a feathered mask.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from .devices import AUTO, Placement, torch_device
from .landmarks import FaceFinder
from .params import number
from .serving import Output

WEIGHTS = "GFPGANv1.4.pth"
SIDE = 512  # pixels, the network's face size
# Where the FFHQ-aligned 512x512 faces GFPGAN was trained on have their eye
# centres, nose tip and mouth corners (x, y), left to right in the image.
TEMPLATE = np.array([[192.98, 239.95], [318.90, 240.19], [256.63, 314.02],
                     [201.26, 371.41], [313.09, 371.15]], np.float32)
# Mesh indices: iris centres, nose tip, mouth corners.
IRISES, NOSE_TIP, MOUTH_CORNERS = (468, 473), 1, (61, 291)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``(478, 2)`` mesh landmarks -> ``(5, 2)`` points in TEMPLATE's order."""
    eyes = sorted((landmarks[i] for i in IRISES), key=lambda p: p[0])
    mouth = sorted((landmarks[i] for i in MOUTH_CORNERS), key=lambda p: p[0])
    return np.array([*eyes, landmarks[NOSE_TIP], *mouth], np.float32)


def _paste_mask() -> np.ndarray:
    """``(512, 512) float32``: 1 inside the aligned face, fading to 0 before the crop's edge."""
    mask = np.zeros((SIDE, SIDE), np.float32)
    cv2.ellipse(mask, (256, 290), (190, 230), 0, 0, 360, 1.0, -1)
    return cv2.GaussianBlur(mask, (0, 0), 12)


class Gfpgan:
    """Filter. PARAMS ``strength`` 0..1 (default 0.7): the share of the restored face.
    MASK: the faces' paste regions. INFO: ``faces``, ``warnings``. The network runs on the
    CUDA device ``placement`` chooses, else on the CPU; face finding runs on the CPU."""

    runtime = "torch"

    def __init__(self, version_dir: Path, parameters: dict[str, str], placement: Placement = AUTO) -> None:
        from spandrel import ModelLoader

        self.torch_device, self.device = torch_device(placement)
        self.network = ModelLoader().load_from_file(version_dir / WEIGHTS).model.eval().to(self.torch_device)
        self.faces = FaceFinder()
        self.paste = _paste_mask()

    @torch.inference_mode()
    def _restore(self, aligned: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(aligned).permute(2, 0, 1)[None].float().to(self.torch_device) / 127.5 - 1.0
        y = self.network(x)[0][0].clamp(-1, 1)
        return ((y + 1.0) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        strength = number(params, "strength", 0.7, 0.0, 1.0)
        height, width = image.shape[:2]
        result = image.astype(np.float32)
        mask = np.zeros((height, width), np.float32)
        faces = self.faces(image)
        for landmarks in faces if strength else []:
            matrix, _ = cv2.estimateAffinePartial2D(five_points(landmarks), TEMPLATE)
            aligned = cv2.warpAffine(image, matrix, (SIDE, SIDE), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT)
            restored = strength * self._restore(aligned) + (1 - strength) * aligned
            back = cv2.invertAffineTransform(matrix)
            face = cv2.warpAffine(restored.astype(np.float32), back, (width, height), flags=cv2.INTER_LINEAR)
            weight = cv2.warpAffine(self.paste, back, (width, height), flags=cv2.INTER_LINEAR)[..., None]
            result = weight * face + (1 - weight) * result
            mask = np.maximum(mask, weight[..., 0])
        out = np.clip(result + 0.5, 0, 255).astype(np.uint8)
        changed = mask > 0
        out[~changed] = image[~changed]
        warnings = [] if faces else ["no face found"]
        return Output(out, changed.astype(np.uint8) * 255, {"faces": len(faces), "warnings": warnings})


def random_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Write a GFPGAN v1.4-shaped checkpoint with random weights (plumbing tests only)."""
    from spandrel.architectures.GFPGAN import GFPGAN

    torch.manual_seed(seed)
    network = GFPGAN(out_size=512, num_style_feat=512, channel_multiplier=2, decoder_load_path=None,
                     fix_decoder=False, num_mlp=8, input_is_latent=True, different_w=True, narrow=1,
                     sft_half=True)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / WEIGHTS
    torch.save({"params_ema": network.state_dict()}, path)
    return path
