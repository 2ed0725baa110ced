"""Restoration of old or damaged photos: what a photo needs, and scratch removal.

``Analyze`` measures a photo and decides which stages of the ``restore`` chain
(analyze -> descratch -> denoise -> dejpeg -> ... -> tone) run, with their
parameters. ``Descratch`` finds scratches, dust and tears and inpaints them
(``photocraft_models.defects`` and ``photocraft_models.defect_net``). Everything is
classical (OpenCV, numpy) except the defect network (trained here: models/train_defects.py)
and face detection: MediaPipe face detection, short-range model (BlazeFace,
Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile
GPUs", 2019; Apache-2.0).

Thresholds were chosen on the photos of ``skimage.data`` (astronaut, coffee,
chelsea, rocket, camera, immunohistochemistry, hubble_deep_field, coins),
clean and degraded with ``photocraft_models.degrade``; see
models/tests/test_restoration.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .defect_net import DefectNet
from .defects import repair
from .devices import CPU
from .prints import TONINGS, analyse_print, balance_params
from .serving import InvalidInput, Output

# Stage decisions (Analyze).
NOISE_SIGMA_MIN = 5.0  # denoise above this noise level (0..255); clean photos measure 0.3-3
NOISE_SIGMA_FULL = 8.0  # OIDN at full strength from this level; below it, strength sigma/8
BLOCKINESS_MIN = 0.3  # dejpeg above this; clean photos measure < 0.25, JPEG quality 15 > 0.8
BLOCKINESS_NOISE = (0.5, 0.8)  # waifu2x noise level 1 below the first, 2 below the second, else 3
# Descratch when either detector finds over 0.7 % of the photo: the classical one's scratches (clean photos
# measure < 0.4 %) or the network's scratches and dust (clean photos < 0.7 %: camera's tripod 0.67 %). The
# network finds more on grainy old prints; the classical one more on thin scratches over clean photos.
SCRATCH_FRACTION_MIN = 0.007
NET_FILE = "defects.onnx"  # the defect network's weights in Analyze's and Descratch's version folders
# Tears alone do not start descratch: white objects touching the border (a plate, a blown-out sky) can
# measure as tears; they are reported, and repaired with the scratches when those start it.


def _luma(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)


def noise_sigma(image: np.ndarray) -> float:
    """Standard deviation of white noise in ``(H, W, 3) uint8`` RGB, on the 0..255 scale.

    Each channel is filtered with Immerkær's noise-estimation mask
    ([[1,-2,1],[-2,4,-2],[1,-2,1]] / 6, which passes white noise with unit
    gain and cancels smooth ramps; "Fast Noise Variance Estimation", CVIU
    1996). Its RMS in 16 x 16 blocks is large where the photo has detail and
    equals the noise level in the flattest blocks: the estimate is the 10th
    percentile over blocks, divided by 0.89 (that percentile's ratio to sigma,
    measured on flat images with Gaussian noise). Blocks touching 0 or 255 are
    left out, as clipping hides noise there. 0.0 when no block qualifies.
    """
    block = 16
    height, width = (s // block * block for s in image.shape[:2])
    if height == 0 or width == 0:
        return 0.0
    x = image[:height, :width].astype(np.float32)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32) / 6
    residual = cv2.filter2D(x, -1, kernel, borderType=cv2.BORDER_REFLECT)

    def blocks(a: np.ndarray) -> np.ndarray:  # (n_blocks * 3, block * block)
        a = a.reshape(height // block, block, width // block, block, 3)
        return a.transpose(0, 2, 4, 1, 3).reshape(-1, block * block)

    values = blocks(x)
    unclipped = (values.min(axis=1) > 0) & (values.max(axis=1) < 255)
    if not unclipped.any():
        return 0.0
    rms = np.sqrt((blocks(residual)[unclipped] ** 2).mean(axis=1))
    return float(np.percentile(rms, 10) / 0.89)


def blockiness(image: np.ndarray) -> float:
    """Strength of JPEG's 8 x 8 block grid in ``(H, W, 3) uint8`` RGB, about 0 without it.

    Absolute differences between neighbouring pixels of the luma (clipped at
    40 so that strong edges do not dominate) are averaged by their position
    modulo 8 across columns, and across rows. JPEG at low quality makes the
    differences across block boundaries larger than those inside blocks: the
    measure is the largest of the 8 averages over the mean of the others,
    minus 1, averaged over both directions. The largest phase is taken, so
    a photo cropped after compression still counts.
    Measured: clean photos -0.01..0.22; JPEG quality 90: 0.03-0.2; 50: 0.3-0.6;
    15: 0.85-1.5 (higher on smooth photos).
    """
    gray = _luma(image)
    result = []
    for diff in (np.abs(np.diff(gray, axis=1)), np.abs(np.diff(gray, axis=0)).T):
        usable = diff.shape[1] // 8 * 8
        if usable == 0:
            return 0.0
        profile = np.minimum(diff[:, :usable], 40).reshape(diff.shape[0], -1, 8).mean(axis=(0, 1))
        phase = int(profile.argmax())
        result.append(profile[phase] / max(float(np.delete(profile, phase).mean()), 1e-6) - 1)
    return float(np.mean(result))


def baseline_descratch(image: np.ndarray) -> np.ndarray:
    """The classical baseline: pixels whose luma differs by more than 30 from its 5 x 5
    median, dilated by 1 px, inpainted with Telea's method (radius 3).

    ``(H, W, 3) uint8`` RGB in and out. Telea, "An Image Inpainting Technique Based on
    the Fast Marching Method", Journal of Graphics Tools 9(1), 2004.
    """
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    outliers = (np.abs(gray.astype(np.int16) - cv2.medianBlur(gray, 5)) > 30).astype(np.uint8)
    mask = cv2.dilate(outliers, np.ones((3, 3), np.uint8))
    return cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA)


class Descratch:
    """Filter: repairs scratches, dust and tears. ``(H, W, 3) uint8`` RGB in and out; MASK
    ``(H, W) uint8`` 255 on the defects (the only pixels changed); INFO ``{"scratches" |
    "dust" | "tears": {"count": int, "pixels": int}, "pixels": int}`` (``Defects.summary``
    and the total). Detection: what ``defect_net.DefectNet`` (``defects.onnx`` in the version
    folder) or the classical ``defects.find_defects`` finds (the network finds more on grainy
    old prints, the classical detectors more on thin scratches over clean photos: docs/models.md);
    repair: ``defects.repair``. PARAMS are not used.
    """

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        self.net = DefectNet(version_dir / NET_FILE, CPU)  # CPU-only, like the inpainting (gpu = false)

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        network, classical = self.net.find_with_classical(image)
        defects = network | classical
        mask = defects.mask
        return Output(repair(image, defects), mask.astype(np.uint8) * 255,
                      {**defects.summary(), "pixels": int(mask.sum())})


class Analyze:
    """Analyzer: ``(H, W, 3) uint8`` RGB -> ``{"print", "noise_sigma", "blockiness",
    "defects", "faces", "stages"}``.

    ``print``: ``prints.analyse_print`` (monochrome, toned, faded, cast, levels).
    ``noise_sigma`` (0..255 scale) and ``blockiness``: the functions of the same names.
    ``defects``: ``Defects.summary`` of what ``defect_net.DefectNet`` (``defects.onnx`` in the
    version folder) or the classical ``defects.find_defects`` found, which descratch repairs;
    descratch runs when either marks over 0.7 % of the photo (``SCRATCH_FRACTION_MIN``). ``faces``: MediaPipe face
    detection (short-range model, confidence 0.5). ``stages``: for each of denoise,
    dejpeg, descratch, balance, faces and colorize, ``{"run": bool, "params": {...}}``:
    denoise with ``strength`` 0..1, dejpeg with waifu2x ``noise`` 1..3, balance with
    ``prints.balance_params`` (run when one is not 0), colorize when the print is monochrome
    (gray or toned) and toning is "remove".
    PARAMS ``toning`` "remove" (default) or "keep" (a toned print keeps its tone and is not
    colorized); another value raises InvalidInput.
    """

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        from mediapipe.python.solutions.face_detection import FaceDetection

        self.net = DefectNet(version_dir / NET_FILE, CPU)  # CPU-only, like MediaPipe here (gpu = false)
        self._faces = FaceDetection(model_selection=0, min_detection_confidence=0.5)

    def __call__(self, image: np.ndarray, params: dict) -> dict:
        sigma = noise_sigma(image)
        blocks = blockiness(image)
        toning = params.get("toning", "remove")
        if toning not in TONINGS:
            raise InvalidInput(f"toning must be one of {', '.join(TONINGS)}, not {toning!r}")
        print_ = analyse_print(image, toning)
        balance = balance_params(print_)
        network, classical = self.net.find_with_classical(image)
        defects = (network | classical).summary()
        size = image.shape[0] * image.shape[1]
        marked = float(max((network.scratches | network.dust).sum(), classical.scratches.sum())) / size
        faces = len(self._faces.process(np.ascontiguousarray(image)).detections or [])
        return {
            "print": print_,
            "noise_sigma": round(sigma, 2),
            "blockiness": round(blocks, 3),
            "defects": defects,
            "faces": faces,
            "stages": {
                "denoise": {"run": sigma > NOISE_SIGMA_MIN,
                            "params": {"strength": round(min(1.0, sigma / NOISE_SIGMA_FULL), 2)}},
                "dejpeg": {"run": blocks > BLOCKINESS_MIN,
                           "params": {"noise": 1 + sum(blocks >= b for b in BLOCKINESS_NOISE)}},
                "descratch": {"run": marked > SCRATCH_FRACTION_MIN, "params": {}},
                "faces": {"run": faces > 0, "params": {}},
                "balance": {"run": any(balance.values()), "params": balance},
                "colorize": {"run": print_["monochrome"] and toning == "remove", "params": {}},
            },
        }
