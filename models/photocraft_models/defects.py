"""Defects of old prints: scratches, dust and tears, found and repaired.

``find_defects`` marks scratches (thin light or dark lines, nearly straight,
30 px or longer), dust (compact specks and spots up to about 10 px across) and
tears (paper-white pieces torn off at the border); ``repair`` inpaints them.
Everything is classical (OpenCV, numpy). Thresholds are multiples of local
floors (medians over about 31 x 31 px), so grain and texture raise them where
they are. They were chosen on the photos of ``skimage.data`` damaged with
``photocraft_models.degrade`` (clean, and with grain and JPEG); what they reach
is measured in models/tests/test_defects.py and docs/models.md: thin, long,
gently bent scratches are found well, wide (5-7 px), short or strongly curved
ones mostly not, and dust only in part.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

DETECT_SIDE = 2048  # px: larger photos are searched on a copy this size on its long side
# Scratches (_scratches).
HAT_SIZE = 5  # top-hat / black-hat square: keeps bright / dark details up to 4 px wide
LINE_LENGTH = 21  # px, the straight line a scratch pixel must lie on
ANGLES = 16  # orientations of that line over 180 degrees
MIN_CONTRAST = 10  # gray levels above the surroundings (top-hat), per pixel
FLOOR_WINDOW, FLOOR_FACTOR = 31, 3.0  # texture floor: 3 x the median opened top-hat in 31 x 31 px
SUPPORT_MIN = 15  # gray levels above the floor, per pixel
MEAN_SUPPORT_MIN = 45  # gray levels, per segment
EVIDENCE_MIN = 4000  # mean support x length (gray levels x px), per segment
LENGTH_MIN = 30  # px
WIDTH_MAX = 5.0  # px, segment area / length
SIDE = 4  # px from the line's centre to where its two sides are compared
ONE_SIDED_RATIO, ONE_SIDED_MAX = 0.3, 0.5  # edge highlights, not scratches: sides differ
BEND_MAX = 0.04  # sagitta / length: rims and contours are arcs, scratches nearly straight
EXTEND = 61  # px: segments grow along their direction by (EXTEND - 1) / 2 on each side
# Dust: residual from a 21 x 21 median (keeps spots up to 10 px), compact and small.
DUST_MEDIAN, DUST_AREA, DUST_SIDE = 21, 120, 14  # px, px^2, px
DUST_HIGH, DUST_LOW, DUST_MIN = 24.0, 8.0, 100.0  # x the local floor (median |residual|); gray levels
# Tears: flat, near paper white, large, at the border, with an abrupt edge.
PAPER_LIGHT = 215  # luma, at least
TEAR_SATURATION = 60  # HSV saturation (0..255), under
TEAR_FLATNESS = 6.0  # gray levels: the most local standard deviation (5 x 5) inside; on grainy photos
TEAR_GRAIN = 3.0  # x the grain's standard deviation, when that is more
TEAR_AREA = 60, 0.002  # px^2, and fraction of the photo: at least the larger
CLIPPED = 253  # luma: pieces this light are blown-out highlights, not paper
TEAR_EDGE = 70  # gray levels between the piece and the photo around it
TEAR_EDGE_FRACTION = 0.7  # of the ring around the piece
INPAINT_RADIUS = 3  # px
FILL_SCALE = 4  # large holes are filled at 1/4 scale first


@dataclass
class Defects:
    """Masks ``(H, W) bool`` of the scratches, dust and tears of a photo."""

    scratches: np.ndarray
    dust: np.ndarray
    tears: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """Every defect pixel, ``(H, W) bool``."""
        return self.scratches | self.dust | self.tears

    def __or__(self, other: Defects) -> Defects:
        """What either found; a pixel keeps the first kind of scratches, tears, dust that holds it."""
        tears = self.tears | other.tears
        scratches = (self.scratches | other.scratches) & ~tears
        return Defects(scratches, (self.dust | other.dust) & ~tears & ~scratches, tears)

    def summary(self) -> dict[str, dict[str, int]]:
        """``{"scratches" | "dust" | "tears": {"count": connected parts (8-connected), "pixels": int}}``."""
        result = {}
        for name in ("scratches", "dust", "tears"):
            mask = getattr(self, name)
            count = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
            result[name] = {"count": int(count), "pixels": int(mask.sum())}
        return result


def check_image(image: np.ndarray) -> None:
    """Raises ValueError unless ``image`` is ``(H, W, 3) uint8`` RGB."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {getattr(image, 'shape', type(image))} "
                         f"{getattr(image, 'dtype', '')}")


def find_defects(image: np.ndarray) -> Defects:
    """The defects of ``(H, W, 3) uint8`` RGB, by the classical detectors below (the platform
    repairs what they or ``defect_net.DefectNet`` find: docs/models.md). Photos over 2048 px on
    their long side are searched on a copy that size. Raises ValueError for anything else than
    such an image."""
    return searched(image, _find)


def searched(image: np.ndarray, detect) -> Defects:
    """``detect(image) -> Defects`` on ``(H, W, 3) uint8`` RGB, or, for photos over 2048 px on their
    long side, on a copy that size (area-averaged) with the masks scaled back up. Raises ValueError
    for anything else than such an image."""
    check_image(image)
    scale = DETECT_SIDE / max(image.shape[:2])
    if scale >= 1:
        return detect(image)
    small = detect(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    size = image.shape[1::-1]
    return Defects(*(cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_LINEAR) > 0
                     for m in (small.scratches, small.dust, small.tears)))


def find_tears(image: np.ndarray) -> np.ndarray:
    """Tears of ``(H, W, 3) uint8`` RGB (see ``_tears``), ``(H, W) bool``."""
    return _tears(image, cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))


def _find(image: np.ndarray) -> Defects:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    tears = _tears(image, gray)
    scratches = _scratches(gray.astype(np.float32)) & ~tears
    dust = _dust(gray) & ~tears & ~scratches
    return Defects(scratches, dust, tears)


def _floor(response: np.ndarray) -> np.ndarray:
    """The median of ``response`` (>= 0, gray levels) over 31 x 31 px, at 0.25 gray-level steps."""
    quantised = np.clip(response * 4, 0, 255).astype(np.uint8)
    return cv2.medianBlur(quantised, FLOOR_WINDOW).astype(np.float32) / 4


def _coarse_median(values: np.ndarray) -> np.ndarray:
    """The median of ``values`` (gray levels, clipped to 0..255) over about 31 x 31 px,
    computed on a 1/4 scale copy (area-averaged) and scaled back up; ``(H, W) float32``."""
    height, width = values.shape
    small = cv2.resize(np.clip(values, 0, 255).astype(np.uint8), (max(1, width // 4), max(1, height // 4)),
                       interpolation=cv2.INTER_AREA)
    median = cv2.medianBlur(small, FLOOR_WINDOW // 4 | 1)
    return cv2.resize(median, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _hysteresis(low: np.ndarray, high: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Connected parts of ``low`` holding a ``high`` pixel: (count, labels, stats) of ``low``
    with the other parts' stats zeroed."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(low.astype(np.uint8), connectivity=8)
    seeded = np.zeros(count, bool)
    seeded[np.unique(labels[high & low])] = True
    seeded[0] = False
    stats[~seeded] = 0
    return count, labels, stats


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
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates.astype(np.uint8), connectivity=8)
    # parts too short in any direction are dropped before their shape is measured (most are grain)
    extent = np.hypot(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    candidates = candidates & (extent >= LENGTH_MIN)[labels]
    if count == 1 or not candidates.any():
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


def _scratches(gray: np.ndarray) -> np.ndarray:
    """Thin light or dark line-like defects in an ``(H, W)`` float32 luma; ``(H, W) bool``.

    On the luma: a white top-hat (light scratches) and a black-hat (dark ones)
    with a 5 x 5 square keep details up to 4 px wide, as contrast above their
    surroundings. For each of 16 orientations, a pixel is supported when that
    contrast, spread by 1 px (digital lines wobble), survives an opening with
    a 21 px line at that orientation, minus a texture floor (3 x the local
    median of that opened contrast: grain and texture raise it, but little,
    as the opening removes most of them). Connected supported pixels are kept as a segment when it
    is long (>= 30 px), thin (<= 5 px), strong (mean support x length), nearly
    straight (a fitted parabola bends by at most 4 % of its length; rims and
    contours are arcs) and not one-sided (a highlight along an object's edge
    has different surroundings on its two sides; a scratch mostly has not).
    Kept segments grow by 30 px along their direction through supported
    pixels, bridging stretches where the scratch crosses other structure.
    The result is dilated by 1 px to cover the scratches' soft borders.
    """
    height, width = gray.shape
    smooth = cv2.blur(gray, (3, 3))
    square = np.ones((HAT_SIZE, HAT_SIZE), np.uint8)
    polarities = []
    for operation in (cv2.MORPH_TOPHAT, cv2.MORPH_BLACKHAT):
        contrast = cv2.morphologyEx(gray, operation, square)
        spread = cv2.dilate(contrast, np.ones((3, 3), np.uint8))
        polarities.append((contrast, spread))
    mask = np.zeros((height, width), bool)
    for angle in np.arange(ANGLES) * np.pi / ANGLES:
        normal = np.array([-np.sin(angle), np.cos(angle)]) * SIDE
        side_a, side_b = (cv2.warpAffine(smooth, np.float32([[1, 0, sign * normal[0]], [0, 1, sign * normal[1]]]),
                                         (width, height), borderMode=cv2.BORDER_REFLECT) for sign in (1, -1))
        sides_differ = np.abs(side_a - side_b)
        for contrast, spread in polarities:
            opened = np.minimum(cv2.morphologyEx(spread, cv2.MORPH_OPEN, _line(LINE_LENGTH, angle)), contrast)
            opened = np.where(contrast > MIN_CONTRAST, opened, 0)
            support = opened - FLOOR_FACTOR * _coarse_median(opened)
            candidates = support > SUPPORT_MIN
            one_sided = sides_differ > ONE_SIDED_RATIO * np.maximum(contrast, 1)
            segments = _straight_segments(candidates, support, one_sided, angle)
            if segments.any():
                corridor = cv2.dilate(cv2.dilate(segments.astype(np.uint8), _line(EXTEND, angle)),
                                      np.ones((3, 3), np.uint8))
                mask |= segments | (candidates & (corridor > 0))
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def _dust(gray: np.ndarray) -> np.ndarray:
    """Specks and spots: pixels whose residual from a 21 x 21 median exceeds 24 x the local
    median absolute residual and 100 gray levels seed spots that grow through 8 x (and 50
    gray levels); parts at most 120 px in area and 14 px on a side are kept, dilated by 1 px.
    The high factors keep clean photos' highlights, eyes and texture mostly unmarked."""
    residual = gray.astype(np.float32) - cv2.medianBlur(gray, DUST_MEDIAN)
    mask = np.zeros(gray.shape, bool)
    floor = _floor(np.abs(residual))
    for contrast in (residual, -residual):  # light, dark
        high = (contrast > DUST_HIGH * floor) & (contrast > DUST_MIN)
        count, labels, stats = _hysteresis(contrast > np.maximum(DUST_LOW * floor, DUST_MIN / 2), high)
        area = stats[:, cv2.CC_STAT_AREA]
        keep = ((area > 0) & (area <= DUST_AREA) & (stats[:, cv2.CC_STAT_WIDTH] <= DUST_SIDE)
                & (stats[:, cv2.CC_STAT_HEIGHT] <= DUST_SIDE))
        keep[0] = False
        mask |= keep[labels]
    return cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0


def _grain(gray: np.ndarray) -> float:
    """The standard deviation of fine noise in a uint8 luma, gray levels: the median absolute
    difference from the 3 x 3 median, scaled to a Gaussian's sigma (x 1.4826 for the median
    absolute deviation, x 1.2 for the 3 x 3 median's own share of the noise: measured)."""
    difference = np.abs(gray.astype(np.int16) - cv2.medianBlur(gray, 3))
    return float(np.median(difference)) * 1.4826 * 1.2


def _tears(image: np.ndarray, gray: np.ndarray) -> np.ndarray:
    """Pieces torn off showing paper: connected flat regions (local 5 x 5 standard deviation
    under 6, or 3 x the grain on grainy photos) of low saturation (HSV S < 60) near paper white
    (luma 215-252; 253 and over is a blown-out highlight), at least 60 px and 0.2 % of the photo, touching the
    photo's border, whose surrounding ring (4 to 6 px out) is over 70 gray levels darker at 70 %
    of its pixels (an abrupt edge: skies and white objects fade into the photo). Dark pieces
    (a black scanner lid) and holes inside the photo are not searched: on clean photos they
    could not be told from shadows and white objects. Dilated by 2 px."""
    values = gray.astype(np.float32)
    local = cv2.blur(values, (5, 5))
    spread = np.sqrt(np.maximum(cv2.blur(values * values, (5, 5)) - local * local, 0))
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1]
    flat = (spread < max(TEAR_FLATNESS, TEAR_GRAIN * _grain(gray))) & (saturation < TEAR_SATURATION)
    candidates = (local >= PAPER_LIGHT) & flat
    mask = np.zeros(gray.shape, bool)
    near, far = np.ones((7, 7), np.uint8), np.ones((13, 13), np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates.astype(np.uint8), connectivity=8)
    least = max(TEAR_AREA[0], TEAR_AREA[1] * gray.size)
    for index in np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= least)[1:] if count > 1 else []:
        x, y, w, h = (int(v) for v in stats[index, :4])
        if not (x == 0 or y == 0 or x + w == gray.shape[1] or y + h == gray.shape[0]):
            continue
        x0, y0, x1, y1 = max(x - 7, 0), max(y - 7, 0), x + w + 7, y + h + 7
        piece = labels[y0:y1, x0:x1] == index
        ring = (cv2.dilate(piece.astype(np.uint8), far) > 0) & ~(cv2.dilate(piece.astype(np.uint8), near) > 0)
        level = float(np.median(values[y0:y1, x0:x1][piece]))
        around = values[y0:y1, x0:x1][ring]
        if level < CLIPPED and around.size and (level - around > TEAR_EDGE).mean() >= TEAR_EDGE_FRACTION:
            mask[y0:y1, x0:x1] |= piece
    return cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def repair(image: np.ndarray, defects: Defects) -> np.ndarray:
    """``(H, W, 3) uint8`` RGB with the defects inpainted; only pixels in ``defects.mask`` change.

    Thin defects (scratches, dust): OpenCV's Navier-Stokes inpainting (Bertalmio, Bertozzi,
    Sapiro, "Navier-Stokes, Fluid Dynamics, and Image and Video Inpainting", CVPR 2001),
    radius 3 px. Tears: filled first on a 1/4 scale copy (Telea, "An Image Inpainting
    Technique Based on the Fast Marching Method", JGT 2004), scaled up, then their 2 px
    rim inpainted at full scale, so large holes get a smooth fill rather than streaks.
    Raises ValueError when the masks do not match the image.
    """
    check_image(image)
    mask = defects.mask
    if mask.shape != image.shape[:2]:
        raise ValueError(f"defect masks {mask.shape} do not match the image {image.shape[:2]}")
    restored = image.copy()
    if defects.tears.any():
        height, width = image.shape[:2]
        size = (max(1, width // FILL_SCALE), max(1, height // FILL_SCALE))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        holes = cv2.resize(defects.tears.astype(np.uint8), size, interpolation=cv2.INTER_AREA) > 0
        filled = cv2.inpaint(small, holes.astype(np.uint8), INPAINT_RADIUS, cv2.INPAINT_TELEA)
        coarse = cv2.resize(filled, (width, height), interpolation=cv2.INTER_CUBIC)
        restored[defects.tears] = coarse[defects.tears]
    # thin defects, and the rim of each tear where the coarse fill meets the photo, at full scale
    inner = cv2.erode(defects.tears.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    thin = mask & ~inner
    if thin.any():
        restored[thin] = cv2.inpaint(restored, thin.astype(np.uint8) * 255, INPAINT_RADIUS, cv2.INPAINT_NS)[thin]
    return restored
