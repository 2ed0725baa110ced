"""Finding faces and their 478 landmarks (MediaPipe Face Mesh with irises).

MediaPipe Face Mesh (Kartynnik et al., "Real-time Facial Surface Geometry
from Monocular Video on Mobile GPUs", CVPR Workshops 2019) with the iris
refinement of Attention Mesh (Grishchenko et al., 2020), Apache-2.0; its
models ship inside mediapipe 0.10.21.

MediaPipe's face detector sees the image shrunk to 128x128 and misses faces
under about a fifth of its size, so wide, tall and large images are also
searched in overlapping square tiles (see ``_windows``); a face found twice is
kept once, as found in the whole image or else nearest its tile's centre.
"""

from __future__ import annotations

import math

import numpy as np

_MIN_TILE = 256  # pixels: faces under about a fifth of a tile are not detected


def _windows(h: int, w: int) -> list[tuple[int, int, int, int]]:
    """``(y, x, height, width)`` pixels of the whole image, then of square tiles overlapping by
    half: as large as the image's short side, and half that where it is at least _MIN_TILE."""
    def offsets(length: int, side: int) -> list[int]:
        count = math.ceil((length - side) / (side / 2)) + 1
        return np.linspace(0, length - side, count).round().astype(int).tolist()

    windows = [(0, 0, h, w)]
    for side in (min(h, w), min(h, w) // 2):
        if side >= _MIN_TILE and side < max(h, w):
            windows += [(y, x, side, side) for y in offsets(h, side) for x in offsets(w, side)]
    return windows


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of the bounding boxes of two ``(478, 2)`` landmark sets."""
    (ax0, ay0), (ax1, ay1) = a.min(0), a.max(0)
    (bx0, by0), (bx1, by1) = b.min(0), b.max(0)
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / union if union > 0 else 0.0


class FaceFinder:
    """``finder(image)`` -> one ``(478, 2) float32`` landmark array per face."""

    def __init__(self) -> None:
        from mediapipe.python.solutions.face_mesh import FaceMesh

        # Detection confidence 0.6, not the default 0.5: skimage's colour wheel is a "face" at 0.58.
        self._mesh = FaceMesh(static_image_mode=True, max_num_faces=10, refine_landmarks=True,
                              min_detection_confidence=0.6)

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Landmarks of every face in ``(H, W, 3) uint8 RGB`` ``image``: ``(478, 2) float32``
        (x, y) pixel coordinates each, possibly a little outside the image."""
        h, w = image.shape[:2]
        found = []  # (how far from its tile's centre, landmarks); the whole image first
        for y, x, th, tw in _windows(h, w):
            result = self._mesh.process(np.ascontiguousarray(image[y:y + th, x:x + tw]))
            for face in result.multi_face_landmarks or []:
                points = np.array([(p.x * tw + x, p.y * th + y) for p in face.landmark], np.float32)
                off_centre = np.abs(points.mean(0) - (x + tw / 2, y + th / 2)).max() / tw
                found.append((off_centre if (th, tw) != (h, w) else -1.0, points))
        kept: list[np.ndarray] = []
        for _, points in sorted(found, key=lambda f: f[0]):
            if all(_overlap(points, other) < 0.3 for other in kept):
                kept.append(points)
        return kept
