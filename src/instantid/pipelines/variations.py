"""Series of generations from one face: identity interpolation (paper Fig. 11) and head-pose variants.

Each is a pure function producing conditions; the CLI runs one generation per item with the same seed
and lays the results out on a contact sheet.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import EmbeddingError, UsageError

# Rough depth of each keypoint in front of the eye plane, in units of the eye distance: the nose tip
# stands out most. Enough to move the points plausibly when the head turns; not a face model.
_KPS_DEPTH = np.array([0.0, 0.0, 0.55, 0.15, 0.15])


def interpolate_embeddings(a: np.ndarray, b: np.ndarray, weights: Sequence[float]) -> list[np.ndarray]:
    """(1 - w) * a + w * b for each weight w (0 = identity a, 1 = identity b)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise EmbeddingError(f"cannot interpolate embeddings of shapes {a.shape} and {b.shape}; use one face backend")
    for w in weights:
        if not 0.0 <= w <= 1.0:  # also refuses NaN
            raise UsageError(f"interpolation weights (--weights) must be in [0, 1], got {w}")
    return [(1.0 - w) * a + w * b for w in weights]


def turn_head(kps: np.ndarray, yaw_degrees: float, pitch_degrees: float = 0.0) -> np.ndarray:
    """Five keypoints as they would look after turning the head by yaw (left/right) and pitch (up/down).

    Orthographic rotation about the face centre, with the depth template above.
    """
    kps = np.asarray(kps, np.float64).reshape(5, 2)
    centre = kps.mean(axis=0)
    scale = float(np.linalg.norm(kps[1] - kps[0])) or 1.0
    x, y = (kps - centre).T
    z = _KPS_DEPTH * scale
    yaw, pitch = math.radians(yaw_degrees), math.radians(pitch_degrees)
    x, z = x * math.cos(yaw) + z * math.sin(yaw), -x * math.sin(yaw) + z * math.cos(yaw)
    y = y * math.cos(pitch) - z * math.sin(pitch)
    return (np.stack([x, y], axis=1) + centre).astype(np.float32)


def contact_sheet(images: Sequence[Image.Image], labels: Sequence[str], columns: int | None = None) -> Image.Image:
    """Images in a grid with a label under each."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    columns = columns or min(len(images), 5)
    rows = math.ceil(len(images) / columns)
    width, height = images[0].size
    label_height = 16
    sheet = Image.new("RGB", (columns * width, rows * (height + label_height)), "white")
    draw = ImageDraw.Draw(sheet)
    for index, (image, label) in enumerate(zip(images, labels)):
        x, y = (index % columns) * width, (index // columns) * (height + label_height)
        sheet.paste(image.convert("RGB").resize((width, height)), (x, y))
        draw.text((x + 3, y + height + 2), label, fill="black")
    return sheet
