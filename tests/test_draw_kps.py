import numpy as np
import pytest
from PIL import Image

from instantid import draw_kps
from instantid.face.keypoints import average_embeddings, scale_kps
from shared_fixtures import require_parity_fixture


def test_draw_kps_matches_released_rendering_pixel_for_pixel():
    fixture = require_parity_fixture()
    kps = np.load(fixture / "kps.npy")
    reference = np.asarray(Image.open(fixture / "kps.png").convert("RGB"))
    ours = np.asarray(draw_kps(Image.new("RGB", (reference.shape[1], reference.shape[0])), kps))
    assert ours.shape == reference.shape
    assert (ours != reference).sum() == 0


def test_draw_kps_accepts_size_and_array_and_moves_with_points():
    kps = np.array([[20, 30], [44, 30], [32, 42], [24, 52], [40, 52]], dtype=np.float32)
    by_size = np.asarray(draw_kps((64, 80), kps))
    by_array = np.asarray(draw_kps(np.zeros((80, 64, 3), np.uint8), kps))
    assert by_size.shape == (80, 64, 3) and (by_size == by_array).all()
    shifted = np.asarray(draw_kps((64, 80), kps + [5, 0]))
    assert (shifted != by_size).any()
    # Point colours in full, limbs dimmed to 0.6.
    assert tuple(by_size[30, 20]) == (255, 0, 0) and tuple(by_size[42, 32]) == (0, 0, 255)


@pytest.mark.parametrize("bad", [np.zeros((4, 2)), np.full((5, 2), np.nan)])
def test_draw_kps_rejects_bad_keypoints(bad):
    with pytest.raises(ValueError, match="five finite"):
        draw_kps((64, 64), bad)


def test_scale_kps_and_average_embeddings():
    kps = np.array([[10, 20]] * 5, dtype=np.float32)
    assert np.allclose(scale_kps(kps, (100, 200), (50, 100)), [[5, 10]] * 5)
    a, b = np.ones(4), np.arange(4.0)
    assert np.allclose(average_embeddings([a, b]), (a + b) / 2)
