"""Subject masks for background removal.

U²-Net-p: Qin et al., "U²-Net: Going Deeper with Nested U-Structure for
Salient Object Detection", Pattern Recognition 106, 2020; ONNX weights
(Apache-2.0) from rembg. Preprocessing as in the authors' code: scale by the
image's maximum, normalise with the ImageNet mean and standard deviation;
the fused side output d0 is min-max normalised.

MediaPipe selfie segmentation (Apache-2.0), the general 256x256 model, for
people.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .serving import InvalidInput

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def onnx_providers() -> list[str]:
    """TensorRT, then CUDA, then the CPU, as far as this onnxruntime build has them."""
    import onnxruntime

    preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    available = set(onnxruntime.get_available_providers())
    return [p for p in preferred if p in available]


class U2Net:
    """Segmenter: ``(320, 320, 3) uint8 RGB -> (320, 320) float32`` in [0, 1].

    Parameter ``precision``: ``fp32`` (model.onnx) or ``int8`` (model.int8.onnx,
    made by models/quantize.py).
    """

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        import onnxruntime

        precision = parameters.get("precision", "fp32")
        weights = version_dir / {"fp32": "model.onnx", "int8": "model.int8.onnx"}[precision]
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PHOTOCRAFT_ORT_THREADS", "0"))
        self.session = onnxruntime.InferenceSession(str(weights), options, providers=onnx_providers())
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape != (320, 320, 3):
            raise InvalidInput(f"u2netp takes (320, 320, 3) images, not {image.shape}")
        x = image.astype(np.float32)
        x /= max(float(x.max()), 1e-6)
        x = ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[np.newaxis]
        fused = self.session.run([self.output_name], {self.input_name: x})[0][0, 0]
        low, high = float(fused.min()), float(fused.max())
        return (fused - low) / max(high - low, 1e-6)


class Selfie:
    """Segmenter: ``(H, W, 3) uint8 RGB -> (H, W) float32`` person probability."""

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

        self.segmenter = SelfieSegmentation(model_selection=0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.segmenter.process(np.ascontiguousarray(image)).segmentation_mask.astype(np.float32)
