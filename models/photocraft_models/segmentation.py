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

from pathlib import Path

import numpy as np

from .devices import AUTO, Placement, onnx_options, onnx_providers, onnx_session_device
from .serving import InvalidInput

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


class U2Net:
    """Segmenter: ``(320, 320, 3) uint8 RGB -> (320, 320) float32`` in [0, 1]; ``batch`` takes N at once.

    Parameter ``precision``: ``fp32`` (model.onnx) or ``int8`` (model.int8.onnx,
    made by models/quantize.py). The graph is made batchable at load
    (``serving_graph.batchable``), so a batch is one network run. onnxruntime
    runs on the GPU that ``placement`` names when this build has the CUDA or
    TensorRT provider (``devices.onnx_providers``); ``device`` says where it runs.
    """

    runtime = "onnxruntime"
    input_shape = (320, 320, 3)

    def __init__(self, version_dir: Path, parameters: dict[str, str], placement: Placement = AUTO) -> None:
        import onnx
        import onnxruntime

        from .serving_graph import batchable

        precision = parameters.get("precision", "fp32")
        weights = version_dir / {"fp32": "model.onnx", "int8": "model.int8.onnx"}[precision]
        model = batchable(onnx.load(weights)).SerializeToString()
        self.session = onnxruntime.InferenceSession(model, onnx_options(), providers=onnx_providers(placement))
        self.device = onnx_session_device(placement, self.session)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def batch(self, images: np.ndarray) -> np.ndarray:
        """``(N, 320, 320, 3) uint8 RGB -> (N, 320, 320) float32``: each image scaled by its own
        maximum and normalised; each mask min-max normalised. Raises InvalidInput for other shapes."""
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise InvalidInput(f"u2netp takes (N, 320, 320, 3) images, not {images.shape}")
        x = images.astype(np.float32)
        x /= np.maximum(x.max(axis=(1, 2, 3), keepdims=True), 1e-6)
        x = ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)
        fused = self.session.run([self.output_name], {self.input_name: x})[0][:, 0]
        low, high = fused.min(axis=(1, 2), keepdims=True), fused.max(axis=(1, 2), keepdims=True)
        return (fused - low) / np.maximum(high - low, 1e-6)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if image.shape != self.input_shape:
            raise InvalidInput(f"u2netp takes (320, 320, 3) images, not {image.shape}")
        return self.batch(image[np.newaxis])[0]


class Selfie:
    """Segmenter: ``(H, W, 3) uint8 RGB -> (H, W) float32`` person probability.

    One image per call, on the CPU: MediaPipe's Python solution takes one image
    at a time, its graph runs TFLite on the CPU in the PyPI wheel, and the model
    needs MediaPipe's custom op Convolution2DTransposeBias, so no plain TFLite
    interpreter could run it batched either.
    """

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        from mediapipe.python.solutions.selfie_segmentation import SelfieSegmentation

        self.segmenter = SelfieSegmentation(model_selection=0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.segmenter.process(np.ascontiguousarray(image)).segmentation_mask.astype(np.float32)
