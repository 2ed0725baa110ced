"""Defects found by a small trained network: scratches, dust and tears as masks.

The network (models/train_defects.py: a U-Net, Ronneberger, Fischer and Brox, MICCAI 2015,
with 16-64 channels and 0.23 M weights) was trained here on scikit-image's sample photos
aged by ``photocraft_models.degrade.old_print``, none of them a photo the quality
benchmark scores; it runs with ONNX Runtime. Its data, recipe, licence (Apache-2.0,
ours) and measured results are in models/registry.toml and docs/models.md.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .defects import Defects, check_image, find_defects, find_tears, searched
from .devices import AUTO, Placement, onnx_options, onnx_providers, onnx_session_device

KINDS = ("scratches", "dust", "tears")  # the network's output channels, in order
MULTIPLE = 8  # the network's input sides must be multiples of this (three 2x poolings)
THRESHOLD = 0.5  # a pixel is a defect when the network finds it more likely so than not


class DefectNet:
    """The defect network from the ONNX file at ``path``, run where ``placement`` says
    (``devices.onnx_providers``); ``device`` names where it runs.

    ``net.probabilities(image)``: ``(H, W, 3) uint8`` RGB in, ``(3, H, W) float32``
    probabilities (0..1) of scratches, dust and tears out. ``net.find(image)``: ``Defects``,
    the pixels over ``THRESHOLD`` for scratches and dust, and ``defects.find_tears`` for tears (the
    network's tears measured worse); photos over 2048 px on their long side are searched on
    a copy that size (``defects.searched``). ``net.find_with_classical(image)``: ``net.find(image)`` and
    ``defects.find_defects(image)``, found at once. All raise ValueError for anything else than
    such an image.
    """

    def __init__(self, path: Path, placement: Placement = AUTO) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), onnx_options(), providers=onnx_providers(placement))
        self.device = onnx_session_device(placement, self.session)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="defect-net")

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        check_image(image)
        height, width = image.shape[:2]
        pad = ((0, -height % MULTIPLE), (0, -width % MULTIPLE), (0, 0))
        padded = np.pad(image, pad, mode="reflect") if pad[0][1] or pad[1][1] else image
        batch = padded.transpose(2, 0, 1)[None].astype(np.float32) / 255
        (logits,) = self.session.run(None, {"image": batch})
        return (1 / (1 + np.exp(-logits[0, :, :height, :width]))).astype(np.float32)

    def find(self, image: np.ndarray) -> Defects:
        return searched(image, self._find)

    def find_with_classical(self, image: np.ndarray) -> tuple[Defects, Defects]:
        """What the network finds and what the classical detectors find, at once: the network in a thread of
        its own while the detectors run in the caller's (ONNX Runtime and most of OpenCV work outside
        Python's lock; 1 MP on 2 cores: 1.1-1.3 s one after the other, 1.0 s at once)."""
        check_image(image)
        network = self._thread.submit(self.find, image)
        classical = find_defects(image)
        return network.result(), classical

    def _find(self, image: np.ndarray) -> Defects:
        masks = self.probabilities(image)[:2] > THRESHOLD
        tears = find_tears(image)  # the network's tears measured worse than the classical detector's
        return Defects(masks[0] & ~tears, masks[1] & ~tears & ~masks[0], tears)
