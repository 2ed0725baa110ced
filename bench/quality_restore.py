"""The quality benchmark's restoration part: old prints, repaired by restore and by a classical baseline.

Run by bench/quality.py. Photos: scikit-image's astronaut, coffee, rocket and motorcycle (left view)
and Matplotlib's grace_hopper sample, at their own sizes (512-741 px). Each becomes two old prints with
``degrade.old_print``: a sepia-toned one and a faded colour one (film grain sigma 10, 12 scratches 1-7
px wide, 40 dust specks, 2 tears, JPEG quality 50); its defect masks are the ground truth. The clean
photo is the reference: for the sepia prints its BT.601 luma (removing the tone is the goal), compared
on the luma. Scores:

- detection: ours as the platform's analysis and descratch run it (what the defect network,
  ``defect_net.DefectNet`` with models/trained/defects.onnx, or the classical ``defects.find_defects``
  finds), each of the two alone, and the baseline's masks, run here; a detected pixel is correct within
  2 px of a true defect pixel of any kind, a true pixel found within 2 px of a detected one; pixels
  pooled over the prints;
- PSNR and SSIM on the whole photo and inside the defect masks, and the RMS error inside each kind's
  mask reduced against the damaged print (pooled); ours: restore jobs through the running platform;
- the baseline: a top-hat / black-hat threshold mask (discs of 7 or 11 px, thresholds 60, 100, 140 or
  180 gray levels), OpenCV inpainting (Telea or Navier-Stokes), then non-local means (h 5, 9 or 13),
  optionally auto levels (each channel's 0.5-99.5 percentiles stretched to 0-255); masks and
  inpainters are ranked by the PSNR of the inpainted print, and the best goes on to non-local means.
  Non-local means alone and the damaged print itself compete too: the best by mean PSNR, per kind of
  print, is the one to beat;
- tone: ``prints.analyse_print`` on generated old prints (six photos x sepia, selenium, cyanotype and
  three fade amounts) and on scikit-image's colour photos, clean, which must not read as toned;
- the showcase of ``make run`` (scripts/demo.py ``old_print``) before and after restore.
"""

from __future__ import annotations

import ast
import io
from collections.abc import Callable
from pathlib import Path

import cv2
import httpx
import matplotlib
import numpy as np
import quality_platform as platform_jobs
from photocraft_models import degrade
from photocraft_models.defect_net import DefectNet
from photocraft_models.defects import find_defects
from photocraft_models.prints import analyse_print
from PIL import Image
from skimage import data
from skimage.metrics import structural_similarity

ROOT = Path(__file__).resolve().parents[1]
# detectors: the platform's (what the network or the classical detectors find), and each alone
OURS, NET, CLASSICAL = "ours (network or classical)", "ours, network alone", "ours, classical alone (find_defects)"
HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": data.astronaut, "coffee": data.coffee, "rocket": data.rocket,
    "motorcycle": lambda: data.stereo_motorcycle()[0],
    "grace_hopper": lambda: np.asarray(Image.open(HOPPER).convert("RGB")),
}
COLOUR_PHOTOS: dict[str, Callable[[], np.ndarray]] = {  # scikit-image's colour photos
    "astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea, "rocket": data.rocket,
    "motorcycle": lambda: data.stereo_motorcycle()[0], "hubble_deep_field": data.hubble_deep_field,
    "immunohistochemistry": data.immunohistochemistry, "retina": data.retina,
}
PRINTS = {"sepia print": "sepia", "faded colour print": "faded"}  # name -> old_print's look
KINDS = ("scratches", "dust", "tears")
TOLERANCE = 2  # px
MASKS = {f"hat {size} px, threshold {t}": (size, t) for size in (7, 11) for t in (60, 100, 140, 180)}
INPAINTERS = {"Telea": cv2.INPAINT_TELEA, "NS": cv2.INPAINT_NS}
NLM_H = (5, 9, 13)
RECOGNITION = [("sepia", 0.6), ("selenium", 0.6), ("cyanotype", 0.6), ("faded", 0.4), ("faded", 0.6),
               ("faded", 0.8)]  # (look, fade)
SEED = 2015
EXAMPLE = ("astronaut", (slice(30, 286), slice(110, 366)))  # the photo and 256 x 256 crop the report shows


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``(H, W, 3) uint8`` RGB, float64 (H, W), as Pillow's ``convert("L")`` rounds it."""
    return np.asarray(Image.fromarray(image).convert("L"), np.float64)


def hat_mask(image: np.ndarray, size: int, threshold: float) -> np.ndarray:
    """The baseline's defect mask, ``(H, W) bool``: luma pixels whose white top-hat or black-hat with a
    ``size`` px disc exceeds ``threshold`` gray levels, dilated by 1 px."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    contrast = np.maximum(cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, disc),
                          cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, disc))
    return cv2.dilate((contrast > threshold).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def auto_levels(image: np.ndarray) -> np.ndarray:
    """Each channel's 0.5 and 99.5 percentiles stretched to 0 and 255."""
    low, high = np.percentile(image, (0.5, 99.5), axis=(0, 1))
    return np.clip((image - low) * 255 / np.maximum(high - low, 1) + 0.5, 0, 255).astype(np.uint8)


def baseline(image: np.ndarray, mask: np.ndarray | None, inpainter: int, h: int) -> np.ndarray:
    """``mask`` inpainted (radius 3 px) with ``inpainter`` (an OpenCV flag), then colour non-local means with
    filter strength ``h`` (7 px patches, 21 px search window); without a mask, non-local means alone."""
    inpainted = image if mask is None else cv2.inpaint(image, mask.astype(np.uint8), 3, inpainter)
    return cv2.fastNlMeansDenoisingColored(inpainted, None, h, h, 7, 21)


def hits(detected: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(detected pixels within ``TOLERANCE`` px of a true one, true pixels within it of a detected one)."""
    def near(mask: np.ndarray) -> np.ndarray:
        if not mask.any():
            return np.zeros_like(mask)
        return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE) <= TOLERANCE
    return int((detected & near(truth)).sum()), int((truth & near(detected)).sum())


class Print:
    """One old print: its reference, the damaged photo, the defect masks, and the scores of each method."""

    def __init__(self, photo: str, kind: str, clean: np.ndarray, rng: np.random.Generator) -> None:
        self.photo, self.kind, self.gray = photo, kind, PRINTS[kind] != "faded"
        self.damaged, self.masks = degrade.old_print(clean, rng, look=PRINTS[kind])
        self.reference = luma(clean) if self.gray else clean.astype(np.float64)
        self.crops: dict[str, np.ndarray] = {}  # method -> its crop of the example photo
        if photo == EXAMPLE[0]:
            self.crops["clean photo"] = degrade.grayscale(clean)[EXAMPLE[1]] if self.gray else clean[EXAMPLE[1]]
        self.errors: dict[str, dict[str, tuple[float, int]]] = {}  # method -> mask -> (squared error sum, pixels)
        self.scores: dict[str, tuple[float, float, float, float]] = {}  # method -> PSNR, SSIM, in the masks
        self.score("damaged print", self.damaged)

    def psnr(self, image: np.ndarray) -> float:
        """PSNR of ``image`` against the reference, in dB."""
        out = luma(image) if self.gray else image.astype(np.float64)
        return psnr(float(((out - self.reference) ** 2).mean()))

    def score(self, method: str, image: np.ndarray) -> float:
        if image.shape != self.damaged.shape:
            raise ValueError(f"{method} on {self.photo}: {image.shape}, not {self.damaged.shape}")
        out = luma(image) if self.gray else image.astype(np.float64)
        squared = (out - self.reference) ** 2
        if self.crops:
            self.crops[method] = image[EXAMPLE[1]]
        ssim, ssim_map = structural_similarity(self.reference, out, data_range=255, full=True,
                                               channel_axis=None if self.gray else 2)
        if not self.gray:
            squared, ssim_map = squared.mean(axis=2), ssim_map.mean(axis=2)
        union = np.logical_or.reduce(list(self.masks.values()))
        self.errors[method] = {k: (float(squared[m].sum()), int(m.sum()))
                               for k, m in {**self.masks, "all": union}.items()}
        self.scores[method] = (psnr(float(squared.mean())), float(ssim), psnr(float(squared[union].mean())),
                               float(ssim_map[union].mean()))
        return self.scores[method][0]


def psnr(mse: float) -> float:
    return float(10 * np.log10(255**2 / max(mse, 1e-10)))


class Restoration:
    """The section's state: prints made, jobs submitted, baselines and results scored, then reported."""

    def __init__(self) -> None:
        rng = np.random.default_rng(SEED)
        self.prints = [Print(p, kind, load(), rng) for p, load in PHOTOS.items() for kind in PRINTS]
        self.jobs: dict[int, dict] = {}
        self.reports: dict[int, list[dict]] = {}
        self.best: dict[str, str] = {}
        self.ranking: dict[str, dict[tuple[str, str], float]] = {}
        self.variants: dict[str, dict[str, float]] = {kind: {} for kind in PRINTS}
        self.detection: dict[str, dict[str, list[int]]] = {}
        self.showcase: dict = {}

    def submit(self, client: httpx.Client) -> None:
        self.jobs = {i: platform_jobs.submit(client, p.damaged, "restore", {}) for i, p in enumerate(self.prints)}
        self.showcase["before"] = demo_old_print()
        self.showcase_job = platform_jobs.submit(client, self.showcase["before"], "restore", {})

    def run_baselines(self) -> None:
        self.detect()
        for kind in PRINTS:
            prints = [p for p in self.prints if p.kind == kind]
            masks = [{name: hat_mask(p.damaged, *spec) for name, spec in MASKS.items()} for p in prints]
            # NL-means comes after inpainting and is the same for every mask: masks and inpainters are ranked without
            self.ranking[kind] = {
                (m, i): float(np.mean([p.psnr(cv2.inpaint(p.damaged, pm[m].astype(np.uint8), 3, INPAINTERS[i]))
                                       for p, pm in zip(prints, masks, strict=True)]))
                for m in MASKS for i in INPAINTERS}
            mask, inpainter = max(self.ranking[kind], key=self.ranking[kind].get)
            self.variants[kind]["the damaged print"] = float(np.mean([p.scores["damaged print"][0] for p in prints]))
            for h in NLM_H:
                self._variant(kind, prints, masks, (mask, inpainter, h))
                self._variant(kind, prints, masks, (None, None, h))
            self.best[kind] = max(self.variants[kind], key=self.variants[kind].get)

    def _variant(self, kind: str, prints: list[Print], masks: list[dict], spec: tuple) -> None:
        """Scores one baseline variant, (mask, inpainter, NL-means h) or (None, None, h) for NL-means
        alone, with and without auto levels, on ``prints``."""
        mask, inpainter, h = spec
        label = f"{mask}, {inpainter}, NL-means h={h}" if mask else f"NL-means h={h} alone"
        for p, m in zip(prints, masks, strict=True):
            out = baseline(p.damaged, m[mask] if mask else None, INPAINTERS.get(inpainter, 0), h)
            p.score(label, out)
            p.score(label + ", auto levels", auto_levels(out))
        for name in (label, label + ", auto levels"):
            self.variants[kind][name] = float(np.mean([p.scores[name][0] for p in prints]))

    def detect(self) -> None:
        """Pooled detection counts: method -> kind -> [correct detections, detections, found truths, truths]."""
        net = DefectNet(ROOT / "models" / "trained" / "defects.onnx")
        for p in self.prints:
            union = np.logical_or.reduce(list(p.masks.values()))
            methods = {}
            network, classical = net.find(p.damaged), find_defects(p.damaged)
            for method, found in ((OURS, network | classical), (NET, network), (CLASSICAL, classical)):
                methods[method] = {k: getattr(found, k) for k in KINDS} | {"all": found.mask}
            for name, spec in MASKS.items():
                mask = hat_mask(p.damaged, *spec)
                methods[f"baseline, {name}"] = {k: mask for k in (*KINDS, "all")}
            for method, detected in methods.items():
                for kind in (*KINDS, "all"):
                    truth = union if kind == "all" else p.masks[kind]
                    correct, _ = hits(detected[kind], union)
                    _, recalled = hits(detected[kind], truth)
                    counts = self.detection.setdefault(method, {}).setdefault(kind, [0, 0, 0, 0])
                    for i, value in enumerate((correct, int(detected[kind].sum()), recalled, int(truth.sum()))):
                        counts[i] += value

    def collect(self, client: httpx.Client) -> set[str]:
        warnings: set[str] = set()
        for i, job in self.jobs.items():
            view = platform_jobs.finish(client, job)
            warnings.update(view["warnings"])
            self.prints[i].score("ours (restore)", platform_jobs.image(client, view))
            self.reports[i] = platform_jobs.json_results(client, view)
            print(f"  old print {self.prints[i].photo} / {self.prints[i].kind}: done", flush=True)
        view = platform_jobs.finish(client, self.showcase_job)
        self.showcase |= {"after": platform_jobs.image(client, view), "warnings": view["warnings"]}
        return warnings


def demo_old_print() -> bytes:
    """The showcase photo of ``make run``: scripts/demo.py's ``old_print()`` itself, compiled from its source
    (importing the script would need its WebSocket client, which this environment lacks)."""
    source = (ROOT / "scripts" / "demo.py").read_text()
    tree = ast.parse(source)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "old_print")
    scope = {"io": io, "np": np, "Image": Image, "data": data}
    exec(compile(ast.Module(body=[function], type_ignores=[]), "scripts/demo.py", "exec"), scope)  # noqa: S102
    return scope["old_print"]()


def recognition() -> tuple[list[tuple[str, str, bool, dict]], list[tuple[str, dict]]]:
    """analyse_print on generated old prints ((photo, case, recognised, result)) and on clean colour photos."""
    rng = np.random.default_rng(SEED + 1)
    cases = []
    for photo, load in {**PHOTOS, "chelsea": data.chelsea}.items():
        clean = load()
        for look, fade in RECOGNITION:
            damaged, _ = degrade.old_print(clean, rng, look=look, fade=fade)
            found = analyse_print(damaged)
            ok = found["faded"] and found["toned"] == "none" if look == "faded" else found["toned"] == look
            cases.append((photo, look if look != "faded" else f"faded {fade}", bool(ok), found))
    return cases, [(name, analyse_print(load())) for name, load in COLOUR_PHOTOS.items()]
