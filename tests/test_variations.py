"""Identity interpolation and head-pose variants."""

import numpy as np
import pytest
from PIL import Image

from instantid.pipelines.variations import contact_sheet, interpolate_embeddings, turn_head

KPS = np.array([[40, 50], [88, 50], [64, 75], [45, 98], [85, 98]], np.float32)


def test_interpolation_endpoints_and_midpoint():
    a, b = np.zeros(4), np.arange(4.0)
    mixed = interpolate_embeddings(a, b, [0.0, 0.5, 1.0])
    assert np.array_equal(mixed[0], a) and np.array_equal(mixed[2], b) and np.allclose(mixed[1], b / 2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        interpolate_embeddings(a, b, [1.5])
    with pytest.raises(ValueError, match="shapes"):
        interpolate_embeddings(np.zeros(512), np.zeros(128), [0.5])


def test_turning_the_head_moves_the_nose_most():
    assert np.allclose(turn_head(KPS, 0), KPS, atol=1e-4)
    right = turn_head(KPS, 30)
    left = turn_head(KPS, -30)
    assert right[2, 0] > KPS[2, 0] > left[2, 0]                       # nose swings with the turn
    assert abs(right[2, 0] - KPS[2, 0]) > abs(right[0, 0] - KPS[0, 0])  # more than the eyes do
    assert np.linalg.norm(right[1] - right[0]) < np.linalg.norm(KPS[1] - KPS[0])  # eyes foreshortened
    up = turn_head(KPS, 0, pitch_degrees=20)
    assert up[2, 1] < KPS[2, 1]


def test_contact_sheet_grid():
    images = [Image.new("RGB", (32, 40), c) for c in ("red", "green", "blue")]
    sheet = contact_sheet(images, ["a", "b", "c"], columns=2)
    assert sheet.size == (64, 2 * (40 + 16))
    assert sheet.getpixel((40, 5)) == (0, 128, 0)
