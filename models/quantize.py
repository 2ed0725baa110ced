"""Build and evaluate an INT8 U²-Net-p for background removal.

    python models/quantize.py              # writes var/weights/u2netp/model.int8.onnx
                                           # and bench/results/quantization.md
    python models/quantize.py --compare    # also scores the alternative variants (~2 min more)

Run it with .venv-triton's Python (onnxruntime, onnx, scikit-image, the
photocraft_models package).

How. The fp32 model (opset 11) is converted to opset 13, which per-channel
DequantizeLinear needs, and prepared with onnxruntime's quant_pre_process
(shape inference, graph optimisation that folds the Shape->Resize subgraphs).
``quantize_static`` then calibrates activation ranges (MinMax) on real photos
from ``skimage.data``, preprocessed exactly as the serving code does, and
writes QOperator-format INT8 (uint8 activations, per-channel int8 weights).
Four nodes stay fp32:

* Concat_786 and Conv_787, the head of decoder stage 2: one channel of the
  upsampled stage-3 output sits at ~228 for every photo while the others, and
  the skip connection, stay below ~70, so a per-tensor uint8 scale (~0.9)
  erases them and the masks collapse (see ``--compare``);
* Conv_1047 and Sigmoid_1048, the fused-mask head (6 -> 1 channel, cheap):
  quantized, the mask keeps ~60 distinct 8-bit levels instead of ~140, which
  bands soft alpha edges (column "levels" of the report).

Evaluation runs ``photocraft_models.segmentation.U2Net``, the serving code,
with precision fp32 and int8 on held-out photos (not used for calibration) and
their mirror images: IoU of the masks thresholded at 0.5, and latency per call
(median of --runs after a warm-up, fp32 and int8 runs interleaved, same
thread count). The bar for the INT8 model to be usable is a mean IoU of 0.97.
Photos without a salient subject (text, gravel, hubble_deep_field) go to
calibration only: their fp32 masks are noise that a +-1 grey-level change of
the input already reshapes (IoU 0.74-0.85), so IoU on them measures nothing.
Entropy calibration is not offered: through quantize_static it uses 128
histogram bins for 128 quantized bins, which leaves the MinMax range as the
only candidate (identical model); with 2048 bins it clipped far too much.

Sources: ONNX Runtime, "Quantize ONNX models",
https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html;
X. Qin et al., "U²-Net: Going Deeper with Nested U-Structure for Salient
Object Detection", Pattern Recognition 106, 107404 (2020), arXiv:2005.09007.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime
import skimage.data
from onnx import version_converter
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from photocraft_models.segmentation import IMAGENET_MEAN, IMAGENET_STD, U2Net
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "var" / "weights" / "u2netp"
SIDE = 320  # U²-Net-p's input side; the gateway resizes photos to it with LANCZOS
BAR = 0.97  # mean IoU the INT8 masks must reach

CALIBRATION = ["astronaut", "coffee", "chelsea", "rocket", "moon", "brick", "grass",
               "text", "gravel", "hubble_deep_field"]
EVALUATION = ["camera", "stereo_motorcycle", "clock", "coins", "page", "retina", "immunohistochemistry"]
STAGE2_HEAD = ("Concat_786", "Conv_787")
MASK_HEAD = ("Conv_1047", "Sigmoid_1048")


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    quant_format: QuantFormat = QuantFormat.QOperator
    per_channel: bool = True
    calibrate_method: CalibrationMethod = CalibrationMethod.MinMax
    calibration_options: tuple[tuple[str, object], ...] = ()
    nodes_to_exclude: tuple[str, ...] = STAGE2_HEAD + MASK_HEAD


CHOSEN = Variant(f"QOperator, per-channel weights, MinMax calibration, fp32 nodes: {' '.join(STAGE2_HEAD + MASK_HEAD)}")
ALTERNATIVES = [  # each changes one thing in CHOSEN
    Variant("QDQ format", quant_format=QuantFormat.QDQ),
    Variant("per-tensor weights", per_channel=False),
    Variant("Percentile calibration (99.99th, asymmetric)", calibrate_method=CalibrationMethod.Percentile,
            calibration_options=(("CalibPercentile", 99.99), ("CalibTensorRangeSymmetric", False))),
    Variant("mask head quantized too", nodes_to_exclude=STAGE2_HEAD),
    Variant("no fp32 nodes", nodes_to_exclude=()),
]


class Row(NamedTuple):
    photo: str
    iou: float
    levels_fp32: int  # distinct 8-bit levels of the mask (alpha gradations)
    levels_int8: int
    ms_fp32: float
    ms_int8: float


def photo(name: str) -> np.ndarray:
    """``skimage.data.<name>`` as the model's (320, 320, 3) uint8 RGB input; grey stacked to 3 channels."""
    pixels = getattr(skimage.data, name)()
    if isinstance(pixels, tuple):  # stereo_motorcycle: (left, right, disparity)
        pixels = pixels[0]
    if pixels.ndim == 2:
        pixels = np.stack([pixels] * 3, axis=-1)
    return np.asarray(Image.fromarray(pixels[..., :3]).resize((SIDE, SIDE), Image.Resampling.LANCZOS))


def network_input(image: np.ndarray) -> np.ndarray:
    """The tensor U2Net.__call__ feeds the network."""
    x = image.astype(np.float32)
    x /= max(float(x.max()), 1e-6)
    return ((x - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[np.newaxis]


class Photos(CalibrationDataReader):
    def __init__(self, input_name: str, images: list[np.ndarray]) -> None:
        self.feeds = iter([{input_name: network_input(image)} for image in images])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def prepare(fp32: Path, prepared: Path) -> None:
    quant_pre_process(version_converter.convert_version(onnx.load(fp32), 13), prepared)
    missing = set(CHOSEN.nodes_to_exclude) - {node.name for node in onnx.load(prepared).graph.node}
    if missing:
        raise SystemExit(f"{fp32} is not the expected U²-Net-p export: no nodes {sorted(missing)}")


def quantize(prepared: Path, variant: Variant, calibration: list[np.ndarray], out: Path) -> None:
    input_name = onnx.load(prepared).graph.input[0].name
    quantize_static(prepared, out, Photos(input_name, calibration), quant_format=variant.quant_format,
                    per_channel=variant.per_channel, calibrate_method=variant.calibrate_method,
                    extra_options=dict(variant.calibration_options),
                    nodes_to_exclude=list(variant.nodes_to_exclude),
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0.5, b > 0.5
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def levels(mask: np.ndarray) -> int:
    return np.unique(np.round(mask * 255)).size


def evaluate(fp32: Path, int8: Path, photos: dict[str, np.ndarray], runs: int) -> tuple[list[Row], str]:
    """Rows for the photos through the serving class U2Net, and the execution provider it used."""
    with tempfile.TemporaryDirectory() as tmp:
        version_dir = Path(tmp)
        (version_dir / "model.onnx").symlink_to(fp32.resolve())
        (version_dir / "model.int8.onnx").symlink_to(int8.resolve())
        full, small = U2Net(version_dir, {"precision": "fp32"}), U2Net(version_dir, {"precision": "int8"})
    rows = []
    for name, image in photos.items():
        reference, mask = full(image), small(image)  # also the warm-up
        times: dict[U2Net, list[float]] = {full: [], small: []}
        for _ in range(runs):
            for model, spent in times.items():
                start = time.perf_counter()
                model(image)
                spent.append(1000 * (time.perf_counter() - start))
        rows.append(Row(name, iou(reference, mask), levels(reference), levels(mask),
                        statistics.median(times[full]), statistics.median(times[small])))
    return rows, small.session.get_providers()[0]


def cpu() -> str:
    info = {key.strip(): value.strip() for key, _, value in
            (line.partition(":") for line in Path("/proc/cpuinfo").read_text().splitlines())}
    model = info.get("model name", platform.processor())
    isa = sorted(set(info.get("flags", "").split()) & {"avx2", "avx512_vnni", "avx_vnni", "amx_int8"})
    return f"{model}, {os.cpu_count()} cores, int8-relevant ISA: {' '.join(isa) or 'none'}"


def summary(rows: list[Row]) -> tuple[float, float, float, float]:
    """Mean IoU, minimum IoU, mean int8 mask levels, speed-up (summed fp32 / int8 latencies)."""
    return (statistics.fmean(r.iou for r in rows), min(r.iou for r in rows),
            statistics.fmean(r.levels_int8 for r in rows),
            sum(r.ms_fp32 for r in rows) / sum(r.ms_int8 for r in rows))


def report(path: Path, rows: list[Row], fp32: Path, int8: Path, threads: int, runs: int, provider: str,
           comparison: list[tuple[Variant, list[Row]]]) -> str:
    mean_iou, min_iou, _, speedup = summary(rows)
    usable = mean_iou >= BAR
    verdict = (f"usable: {'yes' if usable else 'no'} — mean IoU {mean_iou:.4f} "
               f"{'>=' if usable else '<'} {BAR}, int8 {speedup:.2f}x as fast as fp32")
    lines = [
        "# U²-Net-p INT8 quantization",
        "",
        "Written by `models/quantize.py`; its docstring explains the method and the choices.",
        "",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {cpu()}; 1-minute load average after the run: {os.getloadavg()[0]:.2f} "
        "(other processes running there slow both models alike)",
        f"- onnxruntime {onnxruntime.__version__}, {provider}, {threads} intra-op threads for both models",
        f"- Configuration: static quantization, {CHOSEN.name}; uint8 activations, int8 weights; "
        "fp32 model converted to opset 13 and prepared with `quant_pre_process`",
        f"- Calibration photos (`skimage.data`): {', '.join(CALIBRATION)}",
        f"- Held-out evaluation photos (`skimage.data`): {', '.join(EVALUATION)}; each also mirrored (`-flip`)",
        "- IoU: int8 vs fp32 masks from `U2Net` (the serving code), thresholded at 0.5. Levels: distinct "
        "8-bit values in the mask. Latency: one `U2Net` call including pre- and post-processing, "
        f"median of {runs} runs after a warm-up",
        "",
        "| photo | IoU | levels fp32 | levels int8 | fp32 ms | int8 ms |",
        "|---|---:|---:|---:|---:|---:|",
        *(f"| {r.photo} | {r.iou:.4f} | {r.levels_fp32} | {r.levels_int8} | {r.ms_fp32:.1f} | {r.ms_int8:.1f} |"
          for r in rows),
        "",
        f"- Mean IoU: **{mean_iou:.4f}**, minimum IoU: **{min_iou:.4f}** (bar: mean >= {BAR})",
        f"- Speed-up (fp32 / int8, sums of the medians): **{speedup:.2f}x**",
        f"- Model sizes: fp32 {fp32.stat().st_size} bytes, int8 {int8.stat().st_size} bytes",
        "",
        f"**{verdict}**",
    ]
    if comparison:
        lines += ["", "## Variants (`--compare`)", "",
                  "Each alternative changes one thing in the chosen configuration; same photos. "
                  "Speed-up of the alternatives from a single timed run per photo.", "",
                  "| variant | mean IoU | min IoU | int8 levels (mean) | speed-up |", "|---|---:|---:|---:|---:|",
                  *(f"| {v.name} | {m:.4f} | {lo:.4f} | {lv:.0f} | {sp:.2f}x |"
                    for v, (m, lo, lv, sp) in ((v, summary(r)) for v, r in comparison))]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=(
        "Calibrates onnxruntime static INT8 quantization of U²-Net-p on skimage.data photos, writes the "
        "INT8 model, compares it with fp32 on held-out photos through the serving code (mask IoU, latency) "
        "and writes a markdown report. Exits 0 once the report is written, whatever the verdict."))
    parser.add_argument("--fp32", type=Path, default=WEIGHTS / "model.onnx", help="fp32 model (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=WEIGHTS / "model.int8.onnx",
                        help="INT8 model to write (default: %(default)s)")
    parser.add_argument("--report", type=Path, default=ROOT / "bench" / "results" / "quantization.md",
                        help="markdown report to write (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="onnxruntime intra-op threads for both models (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per photo and model (default: %(default)s)")
    parser.add_argument("--compare", action="store_true",
                        help="also quantize and score the alternative variants (a few minutes more)")
    args = parser.parse_args()
    os.environ["PHOTOCRAFT_ORT_THREADS"] = str(args.threads)  # read by U2Net

    started = time.perf_counter()
    calibration = [photo(name) for name in CALIBRATION]
    held_out = {name: photo(name) for name in EVALUATION}
    held_out |= {f"{name}-flip": image[:, ::-1] for name, image in held_out.items()}
    comparison = []
    with tempfile.TemporaryDirectory() as tmp:
        prepared, candidate = Path(tmp) / "prepared.onnx", Path(tmp) / "candidate.onnx"
        prepare(args.fp32, prepared)
        for variant in ALTERNATIVES if args.compare else []:
            quantize(prepared, variant, calibration, candidate)
            comparison.append((variant, evaluate(args.fp32, candidate, held_out, runs=1)[0]))
            print("{}: mean IoU {:.4f}, min {:.4f}, {:.0f} levels, {:.2f}x".format(
                variant.name, *summary(comparison[-1][1])), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        quantize(prepared, CHOSEN, calibration, args.out)
    rows, provider = evaluate(args.fp32, args.out, held_out, args.runs)
    if comparison:
        comparison.insert(0, (dataclasses.replace(CHOSEN, name=f"chosen: {CHOSEN.name}"), rows))
    verdict = report(args.report, rows, args.fp32, args.out, args.threads, args.runs, provider, comparison)
    print(f"{verdict}\nwrote {args.out} and {args.report} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
