"""The five-keypoint condition image and small pure helpers on keypoints and embeddings."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image

# Colours of the five keypoints (left eye, right eye, nose, left mouth, right mouth), as released.
KPS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255))
# Each limb joins a point to the nose and takes the colour of that point.
_LIMBS = ((0, 2), (1, 2), (3, 2), (4, 2))
_LIMB_HALF_WIDTH = 4
_POINT_RADIUS = 10
_LIMB_DIMMING = 0.6


def _canvas_size(image_or_size) -> tuple[int, int]:
    """(width, height) of a PIL image, an HxW[xC] array, or a (width, height) pair."""
    if isinstance(image_or_size, Image.Image):
        return image_or_size.size
    if isinstance(image_or_size, np.ndarray):
        return int(image_or_size.shape[1]), int(image_or_size.shape[0])
    width, height = image_or_size
    return int(width), int(height)


def check_kps(kps, what: str = "keypoints", error: type | None = None) -> np.ndarray:
    """The one five-keypoint validator: five finite (x, y) points (any [5, 2] or 10-number form) -> [5, 2]
    float64; `error` (default UsageError) naming `what` otherwise."""
    from ..errors import UsageError

    error = error or UsageError
    try:
        raw = np.asarray(kps)
        if raw.dtype.kind not in "iuf":
            raise TypeError(f"dtype {raw.dtype}")
        points = raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise error(f"{what} must be five finite, real (x, y) points (10 numbers), got {type(kps).__name__} ({err})") from None
    if points.size != 10 or not np.isfinite(points).all():
        got = f"{points.size} numbers" if points.size != 10 else "NaN or infinite values"
        raise error(f"{what} must be five finite (x, y) points (10 numbers), got {got}")
    return points.reshape(5, 2)


def draw_kps(image_or_size, kps) -> Image.Image:
    """Render five keypoints the way the released InstantID code does (IdentityNet's condition).

    `image_or_size`: the image the keypoints belong to (only its size is used) or (width, height).
    `kps`: [5, 2] array-like of (x, y) in left eye, right eye, nose, left mouth, right mouth order.
    """
    import cv2  # here, not at import: the CLI checks keypoints (check_kps) before anything heavy loads

    from ..errors import UsageError

    kps = check_kps(kps, "draw_kps' keypoints")
    try:
        width, height = _canvas_size(image_or_size)
    except (TypeError, ValueError) as err:
        raise UsageError(f"draw_kps needs a size (width, height) ({err})") from None
    _check_canvas(width, height, kps)
    # A float canvas, so the dimming below rounds exactly as the released rendering does.
    canvas = np.zeros((height, width, 3), dtype=np.float64)
    for start, end in _LIMBS:
        (x0, y0), (x1, y1) = kps[start], kps[end]
        length = math.hypot(x0 - x1, y0 - y1)
        angle = math.degrees(math.atan2(y0 - y1, x0 - x1))
        centre = (int(np.mean([x0, x1])), int(np.mean([y0, y1])))
        polygon = cv2.ellipse2Poly(centre, (int(length / 2), _LIMB_HALF_WIDTH), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, polygon, KPS_COLORS[start])
    canvas = (canvas * _LIMB_DIMMING).astype(np.uint8)
    for (x, y), color in zip(kps, KPS_COLORS):
        cv2.circle(canvas, (int(x), int(y)), _POINT_RADIUS, color, -1)
    return Image.fromarray(canvas)


def _check_canvas(width: int, height: int, kps: np.ndarray) -> None:
    from ..errors import LimitError, UsageError
    from ..limits import MAX_KPS_CANVAS_PIXELS, MAX_KPS_COORDINATE

    if width < 1 or height < 1:
        raise UsageError(f"draw_kps needs a positive canvas size, got {width}x{height}")
    if width * height > MAX_KPS_CANVAS_PIXELS:
        raise LimitError(f"draw_kps canvas {width}x{height} is above the {MAX_KPS_CANVAS_PIXELS / 1e6:.0f} MP limit "
                         "(instantid.limits.MAX_KPS_CANVAS_PIXELS); draw at the output size")
    if np.abs(kps).max() > MAX_KPS_COORDINATE:
        raise UsageError(f"draw_kps keypoints must lie within +-{MAX_KPS_COORDINATE} pixels, got {np.abs(kps).max():g}")


def scale_kps(kps, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Map keypoints from an image of `from_size` (w, h) onto one of `to_size` (w, h)."""
    kps = np.asarray(kps, dtype=np.float32).reshape(-1, 2)
    sx = to_size[0] / from_size[0]
    sy = to_size[1] / from_size[1]
    return kps * np.array([sx, sy], dtype=np.float32)


def average_embeddings(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of several raw embeddings of one person (the paper's rule for several references)."""
    stacked = np.stack([np.asarray(e, dtype=np.float32).reshape(-1) for e in embeddings])
    if stacked.shape[0] == 0:
        raise ValueError("average_embeddings needs at least one embedding")
    return stacked.mean(axis=0)
