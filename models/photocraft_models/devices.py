"""Where a model runs: the device each runtime uses, chosen once when the model loads.

Triton tells a python-backend model instance its kind and device
(``args["model_instance_kind"]``: ``"GPU"``, ``"CPU"`` or ``"MODEL"``, and
``args["model_instance_device_id"]``); ``Placement.from_triton`` turns that
into a request:

``gpu``   that GPU, or the model fails to load (``NoGpu``): on a GPU node a
          silent CPU fallback would be a bug
``cpu``   the CPU, even when a GPU is visible
``auto``  the first GPU the runtime sees, else the CPU (outside Triton:
          tests, bench/gpu.py)

Each runtime has a pure choice function (``choose``, ``onnx_providers``,
``ncnn_gpuid``) fed with what the runtime sees, and a probe that asks the
runtime. The ncnn runtimes see only NVIDIA's Vulkan driver: Mesa's lavapipe
is a Vulkan device that runs on the CPU, 50x slower, and corrupts ncnn's
output, so the loader is pointed at NVIDIA's ICD file (``VK_DRIVER_FILES``)
and without one ncnn runs on the CPU (``gpuid=-1``).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
# Where Vulkan driver manifests live: the loader's standard folders (the NVIDIA container
# toolkit mounts nvidia_icd.json there when the graphics capability is on) and the
# driver's own folder on GKE-style nodes.
VULKAN_ICD_DIRS = (Path("/etc/vulkan/icd.d"), Path("/usr/share/vulkan/icd.d"), Path("/usr/local/share/vulkan/icd.d"),
                   Path("/usr/local/nvidia/share/vulkan/icd.d"))


class NoGpu(RuntimeError):
    """The model's config asks for a GPU (KIND_GPU) that its runtime cannot use."""


@dataclass(frozen=True)
class Placement:
    """Where a model instance should run: ``kind`` ``gpu`` | ``cpu`` | ``auto``, and the GPU's index."""

    kind: str = "auto"
    device_id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("gpu", "cpu", "auto") or self.device_id < 0:
            raise ValueError(f"bad placement {self.kind!r}, device {self.device_id}")

    @classmethod
    def from_triton(cls, args: dict) -> Placement:
        """From the ``args`` Triton passes to ``initialize``: KIND_GPU, KIND_CPU, or neither (KIND_MODEL)."""
        kind = args.get("model_instance_kind", "")
        if kind == "GPU":
            return cls("gpu", int(args.get("model_instance_device_id", 0)))
        return cls("cpu") if kind == "CPU" else cls("auto")


AUTO = Placement()
CPU = Placement("cpu")


def choose(placement: Placement, gpus: int, runtime: str) -> int | None:
    """The GPU index to use given that ``runtime`` sees ``gpus`` GPUs, or None for the CPU.

    Raises NoGpu when ``placement`` asks for a GPU the runtime does not see.
    """
    if placement.kind == "cpu":
        return None
    if placement.kind == "gpu":
        if placement.device_id >= gpus:
            raise NoGpu(f"the model's config says KIND_GPU (GPU {placement.device_id}) but {runtime} sees "
                        f"{gpus} GPU(s); refusing to run on the CPU instead")
        return placement.device_id
    return 0 if gpus else None


def on_gpu(device: str) -> bool:
    """Whether a device label (``cuda:0 (NVIDIA H200)``, ``vulkan:0 ...``, ``cpu``) names a GPU."""
    return device.startswith(("cuda", "vulkan"))


# CUDA, through the driver (no toolkit needed): what onnxruntime and OIDN can use.

def cuda_devices() -> list[str]:
    """Names of the CUDA devices the NVIDIA driver shows this process; empty without a driver."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return []
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return []
    names = []
    for index in range(count.value):
        device, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
        cuda.cuDeviceGet(ctypes.byref(device), index)
        cuda.cuDeviceGetName(name, len(name), device)
        names.append(name.value.decode(errors="replace"))
    return names


def label(kind: str, index: int | None, names: list[str]) -> str:
    """``cuda:0 (NVIDIA H200)``-style label of the chosen device; ``cpu`` for None."""
    if index is None:
        return "cpu"
    name = names[index] if index < len(names) else "unnamed"
    return f"{kind}:{index} ({name})"


# torch (colorization, GFPGAN, diffusers; OIDN's CUDA device takes torch tensors).

def torch_device(placement: Placement) -> tuple[str, str]:
    """(torch device string, label) for ``placement``; raises NoGpu as ``choose`` does."""
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = choose(placement, gpus, f"torch {torch.__version__} (CUDA {torch.version.cuda})")
    names = [torch.cuda.get_device_name(i) for i in range(gpus)]
    return ("cpu" if index is None else f"cuda:{index}"), label("cuda", index, names)


# onnxruntime.

def onnx_providers(placement: Placement = AUTO, available: list[str] | None = None,
                   gpus: int | None = None) -> list:
    """Execution providers for an InferenceSession: TensorRT, then CUDA, on the chosen GPU, then the CPU.

    ``available``: onnxruntime.get_available_providers() (what the build has);
    ``gpus``: CUDA devices visible (cuda_devices()). Raises NoGpu when a GPU is
    required and the build has no GPU provider (the PyPI ``onnxruntime`` is
    CPU-only: GPU nodes need ``onnxruntime-gpu``) or no GPU is visible.
    """
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if gpus is None:
        gpus = len(cuda_devices())
    gpu_providers = [p for p in GPU_PROVIDERS if p in available]
    build = "onnxruntime" if gpu_providers else "onnxruntime without GPU providers (a GPU needs onnxruntime-gpu)"
    index = choose(placement, gpus if gpu_providers else 0, build)
    if index is None:
        return ["CPUExecutionProvider"]
    return [(p, {"device_id": str(index)}) for p in gpu_providers] + ["CPUExecutionProvider"]


def onnx_options():
    """onnxruntime SessionOptions for a model served beside others on a small node: intra-op threads
    from PHOTOCRAFT_ORT_THREADS (0: onnxruntime's default), and idle pool threads that sleep rather than
    spin, since two Triton instances and the workers share the cores and a spinning pool takes the core
    another process is waiting for (bench/results/worker_path.md); PHOTOCRAFT_ORT_SPIN=1 restores
    onnxruntime's default. Optimizer notes (folded initializers) are not logged."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("PHOTOCRAFT_ORT_THREADS", "0"))
    options.add_session_config_entry("session.intra_op.allow_spinning", os.environ.get("PHOTOCRAFT_ORT_SPIN", "0"))
    options.log_severity_level = 3
    return options


def onnx_session_device(placement: Placement, session) -> str:
    """Label of the device a session really runs on; raises NoGpu if a required GPU was dropped.

    onnxruntime falls back to the CPU by itself when a GPU provider fails to
    initialise (missing CUDA libraries): that must not pass unnoticed.
    """
    first = session.get_providers()[0]
    if first in GPU_PROVIDERS:
        options = session.get_provider_options().get(first, {})
        index = int(options.get("device_id", 0))
        return f"{label('cuda', index, cuda_devices())} via {first}"
    if placement.kind == "gpu":
        raise NoGpu(f"onnxruntime dropped the GPU providers and runs on {first}: "
                    "its CUDA/TensorRT libraries did not load")
    return "cpu"


# ncnn over Vulkan (waifu2x, Real-ESRGAN).

def nvidia_vulkan_icd(directories: tuple[Path, ...] = VULKAN_ICD_DIRS) -> Path | None:
    """NVIDIA's Vulkan driver manifest, if the NVIDIA driver's Vulkan part is installed here:
    the one VK_DRIVER_FILES or VK_ICD_FILENAMES names, else the first in ``directories``."""
    for variable in ("VK_DRIVER_FILES", "VK_ICD_FILENAMES"):
        named = [Path(p) for p in os.environ.get(variable, "").split(os.pathsep) if "nvidia" in Path(p).name]
        if named and named[0].is_file():
            return named[0]
    for directory in directories:
        found = sorted(directory.glob("nvidia_icd*.json")) if directory.is_dir() else []
        if found:
            return found[0]
    return None


def ncnn_gpuid(placement: Placement, nvidia_gpus: int) -> int:
    """ncnn's ``gpuid``: the Vulkan device index, or -1 for the CPU. ``nvidia_gpus``: the
    Vulkan devices NVIDIA's driver shows (0 without its ICD: lavapipe does not count)."""
    index = choose(placement, nvidia_gpus, "ncnn (Vulkan, NVIDIA driver)")
    return -1 if index is None else index


def ncnn_device(placement: Placement, gpu_count) -> tuple[int, str]:
    """(gpuid, label) for an ncnn wrapper whose ``get_gpu_count`` is ``gpu_count``.

    Restricts the Vulkan loader of this process to NVIDIA's driver before ncnn
    first enumerates devices, so that index 0 is never lavapipe.
    """
    icd = nvidia_vulkan_icd(VULKAN_ICD_DIRS)
    if icd is None:
        gpus = 0
    else:
        os.environ["VK_DRIVER_FILES"] = os.environ["VK_ICD_FILENAMES"] = str(icd)
        gpus = gpu_count()
    gpuid = ncnn_gpuid(placement, gpus)
    return gpuid, label("vulkan", None if gpuid < 0 else gpuid, cuda_devices())


# Intel Open Image Denoise: its CUDA device, bound to a torch CUDA stream.

def oidn_device(placement: Placement) -> tuple[str, str]:
    """(torch device string, label) for OIDN; NoGpu as ``choose`` does."""
    names = cuda_devices()
    gpus = 0
    if names:
        import pyoidn
        import torch

        if torch.cuda.is_available():
            gpus = sum(1 for i in range(torch.cuda.device_count()) if pyoidn.Device.is_cuda_available(i))
    index = choose(placement, gpus, "OIDN (CUDA device through torch)")
    return ("cpu" if index is None else f"cuda:{index}"), label("cuda", index, names)
