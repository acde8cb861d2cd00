"""Face-detail pass on the tiny model: runs only for small faces (auto), changes nothing outside its mask,
and gives the model keypoints that land on the face."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from instantid.cli import main
from instantid.errors import UsageError
from instantid.pipelines.face_detail import face_box_from_kps, face_detail, face_detail_all, should_run

FAST = dict(num_inference_steps=3, guidance_scale=2.0)
# A face whose long side is ~40 px, in a 128x128 image.
KPS = np.array([[52.0, 50.0], [68.0, 50.0], [60.0, 58.0], [54.0, 66.0], [66.0, 66.0]])


@pytest.fixture(scope="module")
def scene(photos):
    """A 128x128 real photo to repaint (the pass needs no face detection in it: it uses the keypoints)."""
    return Image.open(photos["astronaut"]).convert("RGB").resize((128, 128), Image.LANCZOS)


@pytest.fixture(scope="module")
def embedding(photos, dlib_analyzer):
    return dlib_analyzer.detect(photos["grace_hopper"])[0].embedding


def test_face_box_from_keypoints_matches_the_detector_box(dlib_analyzer, photos):
    for name in ("t1", "astronaut", "grace_hopper"):
        for face in dlib_analyzer.detect(photos[name]):
            box, ref = face_box_from_kps(face.kps), face.bbox
            inter = np.clip(np.minimum(box[2:], ref[2:]) - np.maximum(box[:2], ref[:2]), 0, None).prod()
            union = np.prod(box[2:] - box[:2]) + np.prod(ref[2:] - ref[:2]) - inter
            assert inter / union > 0.6, (name, box, ref)


def test_auto_runs_only_for_small_faces():
    assert should_run([0, 0, 100, 120], "auto", 256)[0]
    assert not should_run([0, 0, 100, 300], "auto", 256)[0]
    assert should_run([0, 0, 100, 300], "on")[0] and not should_run([0, 0, 10, 10], "off")[0]
    with pytest.raises(UsageError):
        should_run([0, 0, 1, 1], "sometimes")


def test_detail_pass_changes_only_the_face_and_its_keypoints_land_on_it(tiny_pipe, scene, embedding):
    result = face_detail(tiny_pipe, scene, embedding, KPS, prompt="a portrait", strength=0.6,
                         generator=torch.Generator().manual_seed(0), **FAST)
    assert result.ran and "< 256 px" in result.reason
    before, after = np.asarray(scene), np.asarray(result.image)
    mask = result.repainted.mask
    outside = mask == 0
    assert np.array_equal(after[outside], before[outside])  # bit for bit
    assert (after[mask == 1] != before[mask == 1]).mean() > 0.5
    # The keypoints the model got, mapped back from the crop, are the generation's keypoints, on the mask.
    x1, y1, x2, y2 = result.repainted.crop_box
    work_w, work_h = result.repainted.painted.size
    back = result.repainted.crop_kps * [(x2 - x1) / work_w, (y2 - y1) / work_h] + [x1, y1]
    assert np.allclose(back, KPS, atol=1e-6)
    assert all(mask[int(y), int(x)] == 1.0 for x, y in KPS)
    assert max(work_w, work_h) == 128  # repainted at the working size: the image's own
    # Reproducible: same generator seed, same image.
    again = face_detail(tiny_pipe, scene, embedding, KPS, prompt="a portrait", strength=0.6,
                        generator=torch.Generator().manual_seed(0), **FAST)
    assert np.array_equal(np.asarray(again.image), after)


def test_auto_leaves_a_large_face_alone(tiny_pipe, scene, embedding):
    result = face_detail(tiny_pipe, scene, embedding, KPS, threshold=16, **FAST)
    assert not result.ran and "large enough" in result.reason
    assert np.array_equal(np.asarray(result.image), np.asarray(scene))


def test_each_identity_gets_its_own_pass(tiny_pipe, scene, embedding):
    other = KPS + [-36, 30]
    image, results = face_detail_all(tiny_pipe, scene, [(embedding, KPS), (embedding * 0.5, other)],
                                     make_generator=lambda: torch.Generator().manual_seed(1), strength=0.6, **FAST)
    assert [r.ran for r in results] == [True, True]
    union = (results[0].repainted.mask > 0) | (results[1].repainted.mask > 0)
    assert np.array_equal(np.asarray(image)[~union], np.asarray(scene)[~union])


def test_generate_command_with_face_detail(photos, tmp_path, tmp_path_factory, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    out = tmp_path / "detail.png"
    code = main(["generate", "--tiny", "--face", str(photos["astronaut"]), "--prompt", "a knight", "--steps", "3",
                 "--face-detail", "auto", "--face-detail-strength", "0.5", "--out", str(out)])
    assert code == 0
    assert "face detail: repainted (face is" in capsys.readouterr().out
    params = json.loads(Image.open(out).text["parameters"])
    assert params["face_detail"] == "auto" and params["face_detail_strength"] == 0.5
    # Checked before any model loads: 2 steps x 0.4 leaves no denoising step.
    assert main(["generate", "--tiny", "--face", str(photos["astronaut"]), "--prompt", "x", "--steps", "2",
                 "--face-detail", "on", "--out", str(tmp_path / "x.png")]) == 1
    assert "leaves no denoising step" in capsys.readouterr().err


def test_multi_command_details_each_identity(photos, tmp_path, tmp_path_factory, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
    out = tmp_path / "multi.png"
    code = main(["multi", "--tiny", "--face", str(photos["grace_hopper"]), "--face", str(photos["tom_hanks"]),
                 "--box", "0,0,64,128", "--box", "64,0,128,128", "--prompt", "two people", "--steps", "3",
                 "--face-detail", "on", "--face-detail-strength", "0.5", "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().out.count("face detail: repainted") == 2
    assert json.loads(Image.open(out).text["parameters"])["face_detail"] == "on"
