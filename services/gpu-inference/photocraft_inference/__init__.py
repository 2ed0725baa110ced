"""gpu-inference: workers that run stages on NVIDIA Triton Inference Server."""
