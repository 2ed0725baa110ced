"""Portrait retouching of every face in a photo: skin, teeth and eyes.

Faces are found with MediaPipe Face Mesh (Kartynnik et al., "Real-time Facial
Surface Geometry from Monocular Video on Mobile GPUs", CVPR Workshops 2019)
with the iris refinement of Attention Mesh (Grishchenko et al., "Attention
Mesh: High-fidelity Face Mesh Prediction in Real-time", 2020), Apache-2.0.
From its 478 landmarks, per face:

- skin: the face oval minus the slightly dilated eyes, eyebrows and lips,
  smoothed with a self-guided filter (He, Sun, Tang, "Guided Image
  Filtering", ECCV 2010), which flattens pores and blemishes but keeps edges;
- teeth: inside the inner lip contour, on bright unsaturated pixels only,
  yellow (CIELAB b*) is reduced and L* lifted a little;
- eyes: the irises, clipped by the eyelids, gain local contrast (an unsharp
  mask) and a little brightness.

Each effect is blended in through a feathered mask, scaled by its strength.
Image in and out: ``(H, W, 3) uint8 RGB``; MASK: ``(H, W) uint8``, 255 where
pixels may have changed; every other pixel is the input's, bit for bit.

Faces are found by ``landmarks.FaceFinder``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from .landmarks import FaceFinder
from .params import number
from .serving import InvalidInput, Output

_NO_FACE = "no face found"


def _rings(connections: frozenset[tuple[int, int]]) -> list[list[int]]:
    """The closed loops of a MediaPipe connection set, each as landmark indices in order."""
    neighbours = defaultdict(list)
    for a, b in connections:
        neighbours[a].append(b)
        neighbours[b].append(a)
    rings, seen = [], set()
    for start in sorted(neighbours):
        if start in seen:
            continue
        ring, previous, current = [start], start, neighbours[start][0]
        while current != start:
            ring.append(current)
            previous, current = current, next(n for n in neighbours[current] if n != previous)
        seen.update(ring)
        rings.append(ring)
    return rings


def _indices(connections: frozenset[tuple[int, int]]) -> list[int]:
    return sorted({i for pair in connections for i in pair})


def _fill(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    """``(h, w) uint8`` mask, 1 inside any of the ``(n, 2)`` float pixel polygons."""
    mask = np.zeros(shape, np.uint8)
    for polygon in polygons:  # one at a time: fillPoly would leave nested polygons as holes
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 1)
    return mask


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """``(h, w) float32`` weights in [0, 1]: the 0/1 ``mask`` blurred by ``sigma`` pixels."""
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)


def _ramp(x: np.ndarray, zero: float, one: float) -> np.ndarray:
    """0 at ``zero``, 1 at ``one``, linear between and clipped outside."""
    return np.clip((x - zero) / (one - zero), 0, 1)


class Retouch:
    """Filter. PARAMS ``skin``, ``teeth``, ``eyes``, each 0..1 (default 0.5): strength of
    skin smoothing, teeth whitening and iris enhancement. INFO: ``faces`` (int), ``warnings``."""

    def __init__(self, version_dir: Path, parameters: dict[str, str]) -> None:
        from mediapipe.python.solutions import face_mesh_connections as fmc

        self.faces = FaceFinder()
        self._oval = _rings(fmc.FACEMESH_FACE_OVAL)[0]
        self._lips = _rings(fmc.FACEMESH_LIPS)  # outer and inner contour
        self._eyes = [_rings(fmc.FACEMESH_LEFT_EYE)[0], _rings(fmc.FACEMESH_RIGHT_EYE)[0]]
        # The eyebrows are two open chains each (upper and lower edge): use their hull.
        self._brows = [_indices(fmc.FACEMESH_LEFT_EYEBROW), _indices(fmc.FACEMESH_RIGHT_EYEBROW)]
        self._irises = [_rings(fmc.FACEMESH_LEFT_IRIS)[0], _rings(fmc.FACEMESH_RIGHT_IRIS)[0]]

    def __call__(self, image: np.ndarray, params: dict) -> Output:
        skin = number(params, "skin", 0.5, 0.0, 1.0)
        teeth = number(params, "teeth", 0.5, 0.0, 1.0)
        eyes = number(params, "eyes", 0.5, 0.0, 1.0)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InvalidInput(f"retouch takes (H, W, 3) uint8 images, not {image.shape} {image.dtype}")
        faces = self.faces(image)
        result = image.copy()
        mask = np.zeros(image.shape[:2], np.uint8)
        for points in faces:
            self._retouch(result, mask, points, skin, teeth, eyes)
        result = np.where(mask[..., None] > 0, result, image)  # untouched outside the mask, bit for bit
        return Output(result, mask, {"faces": len(faces), "warnings": [] if faces else [_NO_FACE]})

    def _retouch(self, result: np.ndarray, mask: np.ndarray, points: np.ndarray,
                 skin: float, teeth: float, eyes: float) -> None:
        """Retouch the face with ``(478, 2)`` pixel landmarks ``points`` in ``result`` (H, W, 3)
        uint8, in place, and mark the pixels it may have changed with 255 in ``mask`` (H, W)."""
        oval = points[self._oval]
        size = float((oval.max(0) - oval.min(0)).max())  # face height or width, pixels
        pad = math.ceil(0.2 * size) + 2  # room for dilation and feathering
        h, w = mask.shape
        x0, y0 = np.maximum(np.floor(oval.min(0)).astype(int) - pad, 0)
        x1, y1 = np.minimum(np.ceil(oval.max(0)).astype(int) + pad, (w, h))
        if x1 <= x0 or y1 <= y0:
            return
        p = (points - (x0, y0)).astype(np.float32)  # landmarks in the crop
        shape = (y1 - y0, x1 - x0)
        out = result[y0:y1, x0:x1].astype(np.float32)  # 0..255
        touched = np.zeros(shape, bool)
        eye_openings = _fill(shape, [p[ring] for ring in self._eyes])

        if skin:
            lips = _fill(shape, [p[ring] for ring in self._lips])
            brows = _fill(shape, [cv2.convexHull(p[brow])[:, 0] for brow in self._brows])
            grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * round(0.03 * size) + 1,) * 2)
            features = cv2.dilate(eye_openings | lips | brows, grow)
            weight = _feather(_fill(shape, [p[self._oval]]) & (1 - features), 0.02 * size + 0.5)
            # On 0..1 floats OpenCV's guided filter ignores eps (measured), so it runs on 0..255;
            # eps 200 (its square) keeps edges of about 14 levels and more.
            smooth = cv2.ximgproc.guidedFilter(out, out, max(1, round(0.03 * size)), 200)
            out += (skin * weight)[..., None] * (smooth - out)
            touched |= weight > 0

        if teeth:
            # The inner lip contour is the smaller of the two lip rings.
            inner = min((p[ring] for ring in self._lips), key=cv2.contourArea)
            mouth = _fill(shape, [inner])
            if mouth.any():
                lab = cv2.cvtColor(out / 255, cv2.COLOR_RGB2Lab)  # L 0..100, a and b about -127..127
                saturation = cv2.cvtColor(out / 255, cv2.COLOR_RGB2HSV)[..., 1]  # 0..1
                # Teeth are light, unsaturated and not red (lips, gums and tongue are).
                toothlike = _ramp(lab[..., 0], 40, 60) * _ramp(saturation, 0.55, 0.35) * _ramp(lab[..., 1], 18, 8)
                weight = mouth * toothlike
                lab[..., 0] = np.minimum(lab[..., 0] + 6, 100)
                lab[..., 2] -= 0.7 * np.maximum(lab[..., 2], 0)
                whiter = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB) * 255
                out += (teeth * weight)[..., None] * (whiter - out)
                touched |= mouth > 0

        if eyes:
            irises = np.zeros(shape, np.uint8)
            radii = []
            for ring in self._irises:
                centre = p[ring].mean(0)
                radii.append(float(np.linalg.norm(p[ring] - centre, axis=1).mean()))
                cv2.circle(irises, np.round(centre).astype(int).tolist(), max(1, round(radii[-1])), 1, -1)
            radius = float(np.mean(radii))
            weight = _feather(irises & eye_openings, max(0.5, 0.1 * radius))
            detail = out - cv2.GaussianBlur(out, (0, 0), max(0.7, 0.3 * radius))
            vivid = 1.05 * out + 0.8 * detail
            out += (eyes * weight)[..., None] * (vivid - out)
            touched |= weight > 0

        result[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)
        mask[y0:y1, x0:x1][touched] = 255
