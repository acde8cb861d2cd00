"""Face swap: the pure helpers (mask, crop, working size, paste-back) and the whole path on real photos."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.cli import main
from instantid.errors import NoFaceError, UsageError
from instantid.pipelines.face_swap import swap_face, swap_whole_image
from instantid.pipelines.repaint import crop_box, face_mask, mask_bounds, paste_back, working_size
from instantid.errors import StrengthError


@pytest.fixture(scope="module")
def pipe(tiny_pipe):
    return tiny_pipe


FAST = dict(num_inference_steps=2, guidance_scale=2.0)


# ---- pure helpers


def test_face_mask_is_one_on_the_face_soft_at_the_edge_and_exactly_zero_beyond():
    mask = face_mask((200, 160), (80, 50, 120, 100), grow=1.2, feather=0.15)
    assert mask.dtype == np.float32 and mask.shape == (160, 200)
    assert mask[75, 100] == 1.0 and mask[0, 0] == 0.0
    assert 0 < mask.min() + 1 and mask.max() <= 1.0 and ((mask > 0) & (mask < 1)).any()
    x1, y1, x2, y2 = mask_bounds(mask)
    radius = int(np.ceil(0.15 * 50))
    # the soft edge reaches at most `radius` px beyond the grown ellipse (24 x 30 half axes around 100, 75)
    assert x1 >= 100 - 24 - radius - 1 and x2 <= 100 + 24 + radius + 1
    assert y1 >= 75 - 30 - radius - 1 and y2 <= 75 + 30 + radius + 1
    assert np.array_equal(face_mask((200, 160), (80, 50, 120, 100), feather=0) > 0,
                          face_mask((200, 160), (80, 50, 120, 100), feather=0) == 1)


def test_crop_box_holds_the_mask_with_context_and_stays_inside():
    assert crop_box((40, 40, 60, 60), (200, 200), context=2.0) == (30, 30, 70, 70)
    at_corner = crop_box((0, 0, 30, 20), (100, 80), context=3.0)
    assert at_corner == (0, 0, 90, 80)
    x1, y1, x2, y2 = crop_box((150, 5, 199, 70), (200, 100), context=2.5)
    assert 0 <= x1 <= 150 and 0 <= y1 <= 5 and x2 >= 199 and y2 >= 70 and x2 <= 200 and y2 <= 100


def test_working_size_is_long_side_and_multiples():
    assert working_size((300, 300)) == (1024, 1024)
    assert working_size((400, 300), 1024) == (1024, 768)
    assert working_size((90, 50), 64) == (64, 64)  # never below one multiple


def test_paste_back_changes_nothing_where_the_mask_is_zero():
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = face_mask((80, 60), (30, 20, 50, 40))
    generated = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    box = crop_box(mask_bounds(mask), (80, 60))
    out = paste_back(original, generated, box, mask)
    assert np.array_equal(out[mask == 0], original[mask == 0])
    assert (out[mask == 1] != original[mask == 1]).any()
    with pytest.raises(ValueError, match="outside the pasted box"):
        paste_back(original, generated, (35, 25, 45, 35), mask)


# ---- end to end


def test_swap_on_a_real_photo_changes_only_pixels_inside_the_mask(pipe, photos, dlib_analyzer):
    result = swap_face(pipe, [photos["grace_hopper"]], photos["astronaut"], analyzer=dlib_analyzer,
                       working_side=64, generator=torch.Generator().manual_seed(0), **FAST)
    target = np.asarray(Image.open(photos["astronaut"]).convert("RGB"))
    out = np.asarray(result.image)
    assert out.shape == target.shape
    outside = result.mask == 0
    assert np.array_equal(out[outside], target[outside])
    assert (out[~outside] != target[~outside]).mean() > 0.5
    # the mask sits on the astronaut's face, and the model painted a crop around it at the working size
    fx1, fy1, fx2, fy2 = result.target_face.bbox
    assert result.mask[int((fy1 + fy2) / 2), int((fx1 + fx2) / 2)] == 1.0
    assert max(result.painted.size) == 64 and result.painted.size[0] % 64 == 0
    bx1, by1, bx2, by2 = result.crop_box
    assert bx1 <= fx1 and by1 <= fy1 and bx2 >= fx2 and by2 >= fy2


def test_whole_image_mode_is_img2img_at_the_target_pose(pipe, photos, dlib_analyzer):
    result = swap_whole_image(pipe, [photos["grace_hopper"]], photos["astronaut"], analyzer=dlib_analyzer,
                              width=64, height=64, strength=0.5, generator=torch.Generator().manual_seed(0), **FAST)
    assert result.image.size == (64, 64) and result.condition.embedding.shape == (128,)
    assert result.target_face is not None and result.parameters["strength"] == 0.5
    assert result.parameters["family"] == "sdxl"


def test_target_without_a_face_and_bad_strength_are_clear_errors(pipe, photos, dlib_analyzer, blank):
    with pytest.raises(NoFaceError, match="no face found in the target photo .*blank.png"):
        swap_face(pipe, [photos["grace_hopper"]], blank, analyzer=dlib_analyzer, working_side=64, **FAST)
    with pytest.raises(NoFaceError, match="has 1 face"):
        swap_face(pipe, [photos["grace_hopper"]], photos["astronaut"], analyzer=dlib_analyzer, target_index=3)
    with pytest.raises(StrengthError):
        swap_face(pipe, [photos["grace_hopper"]], photos["astronaut"], analyzer=dlib_analyzer, strength=1.2)
    for keywords, words in (({"target_index": -1}, "target_index (--target-index) must be between 0 and 31"),
                            ({"working_side": 10}, "working_side (--working-size) must be >= 64"),
                            ({"grow": 0}, "grow (--mask-grow) must be > 0")):
        with pytest.raises(UsageError, match=re.escape(words)):  # the parameter table's rows, before any analysis
            swap_face(pipe, [photos["grace_hopper"]], blank, analyzer=None, **keywords)
    with pytest.raises(NoFaceError, match="blank.png"):
        swap_face(pipe, [blank], photos["astronaut"], analyzer=dlib_analyzer, working_side=64, **FAST)


def test_swap_command(photos, tmp_path, tmp_path_factory, monkeypatch, capsys, blank):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    out, mask_out = tmp_path / "swapped.png", tmp_path / "mask.png"
    code = main(["swap", "--tiny", "--face", str(photos["grace_hopper"]), "--target", str(photos["astronaut"]),
                 "--steps", "2", "--seed", "2", "--out", str(out), "--mask-out", str(mask_out)])
    assert code == 0 and f"wrote {out}" in capsys.readouterr().out
    image, mask = Image.open(out), np.asarray(Image.open(mask_out))
    target = np.asarray(Image.open(photos["astronaut"]).convert("RGB"))
    assert np.array_equal(np.asarray(image.convert("RGB"))[mask == 0], target[mask == 0])
    params = json.loads(image.text["parameters"])
    assert params["command"] == "swap" and params["strength"] == 0.85 and params["seed"] == 2
    assert main(["swap", "--tiny", "--face", str(photos["grace_hopper"]), "--target", str(blank),
                 "--out", str(tmp_path / "x.png")]) == 1
    assert "error: no face found in the target photo" in capsys.readouterr().err
    assert main(["swap", "--tiny", "--face", str(photos["grace_hopper"]), "--target", str(photos["astronaut"]),
                 "--strength", "2", "--out", str(tmp_path / "x.png")]) == 1
    assert "error: strength must be in (0, 1]" in capsys.readouterr().err
    assert main(["swap", "--tiny", "--face", str(photos["grace_hopper"]), "--target", str(photos["astronaut"]),
                 "--steps", "1", "--out", str(tmp_path / "x.png")]) == 1
    assert "error: strength 0.85 with 1 step(s) leaves no denoising step" in capsys.readouterr().err


def test_swap_help_lists_options_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["swap", "--help"])
    text = capsys.readouterr().out
    for flag, default in (("--strength", "0.85"), ("--region", "default face"), ("--working-size", "1024"),
                          ("--mask-grow", "1.3"), ("--feather", "0.12"), ("--target-index", "default 0")):
        assert flag in text and default in text


@pytest.mark.parametrize("size, bbox, feather", [
    ((200, 160), (80, 50, 120, 100), 0.15), ((200, 160), (0, 0, 40, 60), 0.3),  # at the corner: clipped
    ((300, 120), (250, 60, 330, 150), 0.12), ((90, 90), (10, 10, 80, 85), 0.5), ((200, 160), (80, 50, 120, 100), 0),
])
def test_face_mask_made_in_a_window_equals_the_whole_photo_computation(size, bbox, feather):
    """The mask is computed only around the face (fast on a 100 MP target); it equals drawing and blurring the
    whole photo (to float rounding: OpenCV's border handling sums in another order), with the same support."""
    import math

    import cv2

    width, height = size
    x1, y1, x2, y2 = bbox
    whole = np.zeros((height, width), np.float32)
    cv2.ellipse(whole, (round((x1 + x2) / 2), round((y1 + y2) / 2)), (round((x2 - x1) * 1.3 / 2),
                round((y2 - y1) * 1.3 / 2)), 0, 0, 360, 1.0, -1)
    radius = math.ceil(feather * max(x2 - x1, y2 - y1))
    if radius:
        whole = cv2.GaussianBlur(whole, (2 * radius + 1,) * 2, radius / 2, borderType=cv2.BORDER_CONSTANT)
        whole[whole < 1e-3], whole[whole > 1 - 1e-3] = 0.0, 1.0
    mask = face_mask(size, bbox, grow=1.3, feather=feather)
    np.testing.assert_allclose(mask, whole, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(mask > 0, whole > 0)
    np.testing.assert_array_equal(mask == 1, whole == 1)
