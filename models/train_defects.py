"""Train the defect segmentation network of ``photocraft_models.defect_net`` and export it to ONNX.

The data is made here: photos that ship in scikit-image (its sample data whose documentation
states CC0, public domain or no known copyright restrictions), none of which the quality
benchmark (bench/quality_restore.py) or ``make run``'s showcase uses, aged by
``photocraft_models.degrade.old_print`` with random looks, grain, JPEG quality and defect
counts. Its masks (the pixels each defect changed visibly) are the targets.

    .venv-triton/bin/python models/train_defects.py [--minutes 50] [--out models/trained/defects.onnx]

With ``--steps`` the run is deterministic for a given ``--seed`` on one machine (the learning rate
follows the step count). With ``--minutes`` it follows the clock, so the steps taken and the weights
vary with the machine's load; the committed weights were made that way (docs/models.md gives their
steps), and ``--steps`` with that count repeats their recipe, not their exact values.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage import data
from torch import nn
from torch.nn import functional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photocraft_models import degrade  # noqa: E402
from photocraft_models.defect_net import KINDS, MULTIPLE  # noqa: E402

HERE = Path(__file__).resolve().parent
TRAIN_PHOTOS = ("chelsea", "camera", "brick", "grass", "gravel", "coins", "text", "hubble_deep_field",
                "immunohistochemistry", "retina", "cell", "clock")
PATCH, BATCH = 160, 12
WIDTHS = (16, 32, 48, 64)  # channels at 1, 1/2, 1/4 and 1/8 scale


def photos() -> list[np.ndarray]:
    """The training photos, ``(H, W, 3) uint8`` RGB."""
    loaded = [getattr(data, name)() for name in TRAIN_PHOTOS]
    return [np.repeat(p[..., None], 3, axis=2) if p.ndim == 2 else p[..., :3] for p in loaded]


def aged(photo: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One randomly aged print of ``photo`` at a random scale (300-900 px on the long side), turned
    and mirrored, with a random look, grain (0-25), colour noise (0-30, three times in ten), JPEG
    quality (10-95) and defect counts (per 512 x 512 px: 1-16 scratches, 0-59 specks; 0-2 tears):
    ``(image, targets)`` with targets ``(3, H, W) float32`` masks of scratches, dust and tears."""
    scale = rng.uniform(300, 900) / max(photo.shape[:2])
    scaled = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    if min(scaled.shape[:2]) < PATCH:
        scaled = cv2.resize(scaled, None, fx=PATCH / min(scaled.shape[:2]) + 0.01,
                            fy=PATCH / min(scaled.shape[:2]) + 0.01, interpolation=cv2.INTER_CUBIC)
    scaled = np.ascontiguousarray(np.rot90(scaled, rng.integers(4))[:, ::-1] if rng.random() < 0.5
                                  else np.rot90(scaled, rng.integers(4)))
    area = scaled.shape[0] * scaled.shape[1] / (512 * 512)
    counts = (int(rng.integers(0, 16) * area) + 1, int(rng.integers(0, 60) * area), int(rng.integers(0, 3)))
    if rng.random() < 0.3:  # colour noise too (a digital camera's, not film grain)
        scaled = degrade.gaussian_noise(scaled, rng.uniform(0, 30), rng)
    image, masks = degrade.old_print(scaled, rng, look=str(rng.choice(degrade.LOOKS)), fade=rng.uniform(0.3, 0.9),
                                     grain=rng.uniform(0, 25), quality=int(rng.integers(10, 96)), counts=counts)
    return image, np.stack([masks[k] for k in KINDS]).astype(np.float32)


def batches(pool: list[np.ndarray], rng: np.random.Generator, crops: int = 6):
    """Endless ``(inputs (B, 3, P, P) float32, targets (B, 3, P, P) float32)`` batches."""
    queue: list[tuple[np.ndarray, np.ndarray]] = []
    while True:
        while len(queue) < BATCH:
            image, targets = aged(pool[rng.integers(len(pool))], rng)
            for _ in range(crops):
                y, x = rng.integers(0, image.shape[0] - PATCH + 1), rng.integers(0, image.shape[1] - PATCH + 1)
                queue.append((image[y:y + PATCH, x:x + PATCH], targets[:, y:y + PATCH, x:x + PATCH]))
        order = rng.permutation(len(queue))
        chosen, queue = [queue[i] for i in order[:BATCH]], [queue[i] for i in order[BATCH:]]
        images = np.stack([c[0] for c in chosen]).transpose(0, 3, 1, 2).astype(np.float32) / 255
        yield torch.from_numpy(images), torch.from_numpy(np.stack([c[1] for c in chosen]))


def block(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class UNet(nn.Module):
    """A small U-Net (Ronneberger, Fischer, Brox, "U-Net", MICCAI 2015): RGB 0..1 in, with H and
    W multiples of 8; a logit per pixel for each of scratches, dust and tears out."""

    def __init__(self) -> None:
        super().__init__()
        w = WIDTHS
        self.down = nn.ModuleList([block(3, w[0]), block(w[0], w[1]), block(w[1], w[2]), block(w[2], w[3], 2)])
        self.up = nn.ModuleList([block(w[3] + w[2], w[2]), block(w[2] + w[1], w[1]), block(w[1] + w[0], w[0])])
        self.head = nn.Conv2d(w[0], len(KINDS), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, stage in enumerate(self.down):
            x = stage(x if i == 0 else functional.max_pool2d(x, 2))
            skips.append(x)
        for stage, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = stage(torch.cat([functional.interpolate(x, scale_factor=2.0, mode="bilinear"), skip], 1))
        return self.head(x)


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy (defects weighted 4x: they are rare) plus soft Dice per kind."""
    bce = functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor(4.0).view(1, 1, 1))
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * targets).sum((0, 2, 3)) + 1) / (p.sum((0, 2, 3)) + targets.sum((0, 2, 3)) + 1)
    return bce + dice.mean()


def export(model: UNet, path: Path) -> None:
    """The network as ONNX at ``path``."""
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, 3, 8 * MULTIPLE, 8 * MULTIPLE)
    torch.onnx.export(model, dummy, str(path), input_names=["image"], output_names=["logits"], opset_version=17,
                      dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
                      dynamo=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=50.0, help="training time budget (default 50)")
    parser.add_argument("--steps", type=int, default=0, help="stop after this many steps instead (0: by time)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=HERE / "trained" / "defects.onnx")
    parser.add_argument("--snapshot", type=Path, help="also export here every 10 minutes, to watch progress")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = UNet()
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    budget = args.minutes * 60
    start, step, running, snapshot_at = time.monotonic(), 0, 0.0, 600.0
    for images, targets in batches(photos(), rng):
        elapsed = time.monotonic() - start
        done = step >= args.steps if args.steps else elapsed >= budget
        if done:
            break
        progress = step / args.steps if args.steps else elapsed / budget
        for group in optimiser.param_groups:  # cosine decay to 5 %
            group["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(progress, 1))))
        model.train()
        loss = loss_of(model(images), targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        step += 1
        value = float(loss.detach())
        running = 0.98 * running + 0.02 * value if step > 1 else value
        if step % 50 == 0:
            print(f"step {step:5d}  {elapsed / 60:5.1f} min  loss {running:.4f}", flush=True)
        if args.snapshot and elapsed >= snapshot_at:
            export(model, args.snapshot)
            snapshot_at += 600
    export(model, args.out)
    print(f"{step} steps in {(time.monotonic() - start) / 60:.1f} min; wrote {args.out}")


if __name__ == "__main__":
    main()
