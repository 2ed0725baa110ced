"""Restoration of old or damaged photos: what a photo needs, and scratch removal.

``Analyze`` measures a photo and decides which stages of the ``restore`` chain
(analyze -> denoise -> dejpeg -> descratch -> upscale -> faces -> colorize ->
tone) run, with their parameters. ``Descratch`` finds thin line-like defects
and inpaints them. Everything is classical (OpenCV, numpy) except face
detection: MediaPipe face detection, short-range model (BlazeFace,
Bazarevsky et al., "BlazeFace: Sub-millisecond Neural Face Detection on Mobile
GPUs", 2019; Apache-2.0).

Thresholds were chosen on the photos of ``skimage.data`` (astronaut, coffee,
chelsea, rocket, camera, immunohistochemistry, hubble_deep_field, coins),
clean and degraded with ``photocraft_models.degrade``; see
models/tests/test_restoration.py.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np

from .serving import Output

# Stage decisions (Analyze).
NOISE_SIGMA_MIN = 5.0  # denoise above this noise level (0..255); clean photos measure 0.3-3
NOISE_SIGMA_FULL = 8.0  # OIDN at full strength from this level; below it, strength sigma/8
BLOCKINESS_MIN = 0.3  # dejpeg above this; clean photos measure < 0.25, JPEG quality 15 > 0.8
BLOCKINESS_NOISE = (0.5, 0.8)  # waifu2x noise level 1 below the first, 2 below the second, else 3
SCRATCH_FRACTION_MIN = 0.007  # descratch above this; clean photos measure < 0.003, scratched > 0.008
GRAY_COLOURFULNESS = 8.0  # grayscale below this: gray photos, JPEG-compressed too, measure < 3;
                          # the least colourful sample photo (hubble_deep_field) 15.5

# Scratch detection (detect_scratches).
DETECT_SIDE = 2048  # px: larger photos are searched on a copy this size on its long side
HAT_SIZE = 5  # top-hat / black-hat square: keeps bright / dark details up to 4 px wide
LINE_LENGTH = 21  # px, the straight line a scratch pixel must lie on
ANGLES = 16  # orientations of that line over 180 degrees
MIN_CONTRAST = 10  # gray levels above the surroundings (top-hat), per pixel
FLOOR_WINDOW, FLOOR_FACTOR = 31, 3.0  # texture floor: 3 x the median top-hat in 31 x 31 px
SUPPORT_MIN = 15  # gray levels above the floor, per pixel
MEAN_SUPPORT_MIN = 45  # gray levels, per segment
EVIDENCE_MIN = 4000  # mean support x length (gray levels x px), per segment
LENGTH_MIN = 30  # px
WIDTH_MAX = 5.0  # px, segment area / length
SIDE = 4  # px from the line's centre to where its two sides are compared
ONE_SIDED_RATIO, ONE_SIDED_MAX = 0.3, 0.5  # edge highlights, not scratches: sides differ
BEND_MAX = 0.04  # sagitta / length: rims and contours are arcs, scratches nearly straight
EXTEND = 61  # px: segments grow along their direction by (EXTEND - 1) / 2 on each side
INPAINT_RADIUS = 3  # px


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


def colourfulness(image: np.ndarray) -> float:
    """Hasler and Suesstrunk's colourfulness ("Measuring colourfulness in natural images",
    SPIE 2003) of ``(H, W, 3) uint8`` RGB: 0 for gray, about 15-100 for colour photos."""
    r, g, b = (image[..., i].astype(np.float32) for i in range(3))
    rg, yb = r - g, 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def is_grayscale(image: np.ndarray) -> bool:
    """Whether ``(H, W, 3) uint8`` RGB is a black-and-white photo (JPEG's colour noise allowed)."""
    return colourfulness(image) < GRAY_COLOURFULNESS


@cache
def _line(length: int, angle: float) -> np.ndarray:
    """A 1-pixel line structuring element of ``length`` px at ``angle`` (radians)."""
    kernel = np.zeros((length, length), np.uint8)
    centre, dx, dy = length // 2, np.cos(angle) * (length // 2), np.sin(angle) * (length // 2)
    cv2.line(kernel, (round(centre - dx), round(centre - dy)), (round(centre + dx), round(centre + dy)), 1)
    return kernel


def _straight_segments(candidates: np.ndarray, support: np.ndarray, one_sided: np.ndarray,
                       angle: float) -> np.ndarray:
    """The connected parts of ``candidates`` that are long, thin, strong segments along
    ``angle`` with similar surroundings on both sides; (H, W) bool."""
    count, labels = cv2.connectedComponents(candidates.astype(np.uint8), connectivity=8)
    if count == 1:
        return np.zeros_like(candidates)
    ys, xs = np.nonzero(candidates)
    label = labels[ys, xs]
    area = np.maximum(np.bincount(label, minlength=count), 1).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(label, values, count) / area

    along = np.cos(angle) * xs + np.sin(angle) * ys
    across = np.cos(angle) * ys - np.sin(angle) * xs
    along = along - mean(along)[label]
    # a uniform segment of length L has variance L^2 / 12 along its direction
    length = np.sqrt(12 * mean(along**2)) + 1
    # bend: least-squares parabola across = a + b along + c along^2; its sagitta is |c| (L / 2)^2
    moments = np.stack([mean(along**k) for k in range(5)], axis=1)
    normal = np.stack([moments[:, i:i + 3] for i in range(3)], axis=1) + np.eye(3) * 1e-6
    rhs = np.stack([mean(across * along**k) for k in range(3)], axis=1)
    curvature = np.abs(np.linalg.solve(normal, rhs[..., None])[:, 2, 0])
    strength = mean(support[ys, xs])
    keep = ((length >= LENGTH_MIN) & (area / length <= WIDTH_MAX) & (strength >= MEAN_SUPPORT_MIN)
            & (strength * length >= EVIDENCE_MIN) & (mean(one_sided[ys, xs]) < ONE_SIDED_MAX)
            & (curvature * length / 4 <= BEND_MAX))
    keep[0] = False
    return keep[labels]


def detect_scratches(image: np.ndarray) -> np.ndarray:
    """Scratches in ``(H, W, 3) uint8`` RGB, ``(H, W) bool``: ``_scratches`` of the photo,
    or of a copy 2048 px on its long side (area-averaged) for larger photos, where
    scratches are wider and the search would be slow; its mask is scaled back up."""
    scale = DETECT_SIDE / max(image.shape[:2])
    if scale >= 1:
        return _scratches(image)
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    mask = _scratches(small).astype(np.uint8) * 255
    return cv2.resize(mask, image.shape[1::-1], interpolation=cv2.INTER_LINEAR) > 0


def _scratches(image: np.ndarray) -> np.ndarray:
    """Thin light or dark line-like defects in ``(H, W, 3) uint8`` RGB; ``(H, W) bool``.

    On the luma: a white top-hat (light scratches) and a black-hat (dark ones)
    with a 5 x 5 square keep details up to 4 px wide, as contrast above their
    surroundings. For each of 16 orientations, a pixel is supported when that
    contrast, spread by 1 px (digital lines wobble), survives an opening with
    a 21 px line at that orientation, minus a texture floor (3 x the local
    median contrast). Connected supported pixels are kept as a segment when it
    is long (>= 30 px), thin (<= 5 px), strong (mean support x length), nearly
    straight (a fitted parabola bends by at most 4 % of its length; rims and
    contours are arcs) and not one-sided (a highlight along an object's edge
    has different surroundings on its two sides; a scratch mostly has not).
    Kept segments grow by 30 px along their direction through supported
    pixels, bridging stretches where the scratch crosses other structure.
    The result is dilated by 1 px to cover the scratches' soft borders.
    """
    gray = _luma(image)
    height, width = gray.shape
    smooth = cv2.blur(gray, (3, 3))
    square = np.ones((HAT_SIZE, HAT_SIZE), np.uint8)
    polarities = []
    for operation in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        contrast = cv2.morphologyEx(gray, operation, square)
        floor = FLOOR_FACTOR * cv2.medianBlur(np.clip(contrast, 0, 255).astype(np.uint8), FLOOR_WINDOW)
        spread = cv2.dilate(contrast, np.ones((3, 3), np.uint8))
        polarities.append((contrast, spread, floor.astype(np.float32)))
    mask = np.zeros((height, width), bool)
    for angle in np.arange(ANGLES) * np.pi / ANGLES:
        normal = np.array([-np.sin(angle), np.cos(angle)]) * SIDE
        side_a, side_b = (cv2.warpAffine(smooth, np.float32([[1, 0, sign * normal[0]], [0, 1, sign * normal[1]]]),
                                         (width, height), borderMode=cv2.BORDER_REFLECT) for sign in (1, -1))
        sides_differ = np.abs(side_a - side_b)
        for contrast, spread, floor in polarities:
            support = np.minimum(cv2.morphologyEx(spread, cv2.MORPH_OPEN, _line(LINE_LENGTH, angle)), contrast)
            support = np.where(contrast > MIN_CONTRAST, support, 0) - floor
            candidates = support > SUPPORT_MIN
            one_sided = sides_differ > ONE_SIDED_RATIO * np.maximum(contrast, 1)
            segments = _straight_segments(candidates, support, one_sided, angle)
            if segments.any():
                corridor = cv2.dilate(cv2.dilate(segments.astype(np.uint8), _line(EXTEND, angle)),
                                      np.ones((3, 3), np.uint8))
                mask |= segments | (candidates & (corridor > 0))
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


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
    """Filter: removes scratches. ``(H, W, 3) uint8`` RGB in and out; MASK ``(H, W) uint8``
    255 on the scratches (the only pixels changed); INFO ``{"scratch_pixels": int}``.

    Detection: ``detect_scratches``. Inpainting: OpenCV's Navier-Stokes method
    (Bertalmio, Bertozzi, Sapiro, "Navier-Stokes, Fluid Dynamics, and Image and
    Video Inpainting", CVPR 2001), radius 3 px; on scratches it measured about
    0.2 dB above Telea's.
    """

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        pass

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        scratches = detect_scratches(image)
        mask = scratches.astype(np.uint8) * 255
        restored = image.copy()
        if scratches.any():
            restored[scratches] = cv2.inpaint(image, mask, INPAINT_RADIUS, cv2.INPAINT_NS)[scratches]
        return Output(restored, mask, {"scratch_pixels": int(scratches.sum())})


class Analyze:
    """Analyzer: ``(H, W, 3) uint8`` RGB -> ``{"grayscale", "noise_sigma", "blockiness",
    "scratches", "faces", "stages"}``.

    ``noise_sigma`` (0..255 scale), ``blockiness`` and ``grayscale``: the functions of
    the same names. ``scratches``: the fraction of the photo ``detect_scratches`` marks. ``faces``: MediaPipe face
    detection (short-range model, confidence 0.5). ``stages``: for each of denoise,
    dejpeg, descratch, faces and colorize, ``{"run": bool, "params": {...}}``:
    denoise with ``strength`` 0..1, dejpeg with waifu2x ``noise`` 1..3.
    PARAMS are not used.
    """

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        from mediapipe.python.solutions.face_detection import FaceDetection

        self._faces = FaceDetection(model_selection=0, min_detection_confidence=0.5)

    def __call__(self, image: np.ndarray, params: dict) -> dict:
        sigma = noise_sigma(image)
        blocks = blockiness(image)
        grayscale = is_grayscale(image)
        scratches = float(detect_scratches(image).mean())
        faces = len(self._faces.process(np.ascontiguousarray(image)).detections or [])
        return {
            "grayscale": grayscale,
            "noise_sigma": round(sigma, 2),
            "blockiness": round(blocks, 3),
            "scratches": round(scratches, 5),
            "faces": faces,
            "stages": {
                "denoise": {"run": sigma > NOISE_SIGMA_MIN,
                            "params": {"strength": round(min(1.0, sigma / NOISE_SIGMA_FULL), 2)}},
                "dejpeg": {"run": blocks > BLOCKINESS_MIN,
                           "params": {"noise": 1 + sum(blocks >= b for b in BLOCKINESS_NOISE)}},
                "descratch": {"run": scratches > SCRATCH_FRACTION_MIN, "params": {}},
                "faces": {"run": faces > 0, "params": {}},
                "colorize": {"run": grayscale, "params": {}},
            },
        }
