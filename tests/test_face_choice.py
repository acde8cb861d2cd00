"""Group photos and mixed references are never silent; small faces are looked for closer; tiny ones refused.
Real photos from packages (instantid.face.samples), dlib backend."""

import itertools
import logging
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageOps

from instantid.errors import FaceTooSmallError, NoFaceError
from instantid.face.choice import SAME_PERSON_THRESHOLD, describe_choice, different_people
from instantid.face.small_faces import MIN_FACE_SIDE, check_usable, detect_faces, face_side
from instantid.face.types import sort_largest_first
from instantid.pipelines.condition import face_condition


@pytest.fixture(scope="module")
def t1_q92(tmp_path_factory, photos):
    path = tmp_path_factory.mktemp("q92") / "t1_q92.jpg"
    Image.open(photos["t1"]).save(path, quality=92)
    return path


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory, photos):
    """The astronaut at a fraction of its size: {fraction: path}."""
    folder = tmp_path_factory.mktemp("small")
    image = Image.open(photos["astronaut"]).convert("RGB")
    out = {}
    for fraction in (0.3, 0.25):
        out[fraction] = folder / f"astronaut_{fraction}.png"
        image.resize((int(image.width * fraction), int(image.height * fraction)), Image.LANCZOS).save(out[fraction])
    return out


# ---- deterministic tie-breaks


def test_jpeg_q92_resave_of_t1_makes_dlib_boxes_tie_and_the_tie_break_is_by_score(dlib_analyzer, photos, t1_q92):
    original = dlib_analyzer.detect(photos["t1"])
    assert original[0].area > original[1].area  # no tie in the original: the 130x130 face at 870,67 wins
    faces = dlib_analyzer.detect(t1_q92)
    assert faces[0].area == faces[1].area == original[0].area  # re-encoding grew another face to 130x130
    assert faces[0].score > faces[1].score  # the tie goes to the detector's more confident face
    # ...whatever order the detector reported them in.
    for order in itertools.permutations(faces[:3]):
        assert [f.bbox.tolist() for f in sort_largest_first(order)[:2]] == [f.bbox.tolist() for f in faces[:2]]


def test_equal_area_and_score_break_by_position():
    def face(x, y):
        return replace(_face(), bbox=np.array([x, y, x + 10, y + 10], np.float32))

    faces = [face(50, 5), face(5, 50), face(5, 5)]
    assert [f.bbox[:2].tolist() for f in sort_largest_first(faces)] == [[5, 5], [50, 5], [5, 50]]


def test_prepare_data_keeps_the_same_face_of_the_q92_photo_every_time(dlib_analyzer, t1_q92):
    from instantid.training.prepare import PrepareOptions, analyse_item
    from instantid.training.sources import SourceItem

    item = SourceItem("t1q92", t1_q92, "six people")
    records = [analyse_item(item, dlib_analyzer, PrepareOptions(min_image_size=64)) for _ in range(2)]
    faces = dlib_analyzer.detect(t1_q92)
    assert records[0].bbox == records[1].bbox == tuple(float(v) for v in faces[0].bbox)
    assert records[0].num_faces == 6


# ---- group photos: which face is used, said out loud


def test_group_photo_says_which_face_is_used_and_how_to_pick_another(dlib_analyzer, photos, caplog):
    with caplog.at_level(logging.WARNING):
        condition = face_condition([photos["t1"]], dlib_analyzer)
    faces = dlib_analyzer.detect(photos["t1"])
    assert np.array_equal(condition.faces[0].bbox, faces[0].bbox)
    text = caplog.text
    assert "has 6 faces; using #0 (box 870,67,1000,197" in text and "--face-index N" in text

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        third = face_condition([photos["t1"]], dlib_analyzer, face_index=2)
    assert np.array_equal(third.faces[0].bbox, faces[2].bbox)
    assert "using #2" in caplog.text


def test_single_face_photo_is_quiet(dlib_analyzer, photos, caplog):
    with caplog.at_level(logging.WARNING):
        face_condition([photos["astronaut"]], dlib_analyzer)
    assert "faces; using" not in caplog.text and "different people" not in caplog.text


def test_cli_generate_has_face_index():
    from instantid.cli import build_parser

    args = build_parser().parse_args(["generate", "--face", "t1.jpg", "--face-index", "3", "--prompt", "p",
                                      "--out", "o.png"])
    assert args.face_index == 3


# ---- several --face photos of (apparently) different people


def test_warns_before_averaging_different_people(dlib_analyzer, photos, caplog):
    with caplog.at_level(logging.WARNING):
        condition = face_condition([photos["astronaut"], photos["grace_hopper"]], dlib_analyzer)
    assert len(condition.faces) == 2
    assert "may show different people" in caplog.text and "below 0.93" in caplog.text
    pairs = different_people(condition.faces, ["a", "b"])
    assert len(pairs) == 1 and pairs[0][2] < SAME_PERSON_THRESHOLD["dlib"]


def test_no_warning_for_two_photos_of_one_person(dlib_analyzer, photos, tmp_path, caplog):
    mirrored = tmp_path / "mirrored.png"
    ImageOps.mirror(Image.open(photos["astronaut"]).convert("RGB")).save(mirrored)
    with caplog.at_level(logging.WARNING):
        face_condition([photos["astronaut"], mirrored], dlib_analyzer)
    assert "different people" not in caplog.text


# ---- small and distant faces


def test_small_face_is_found_by_looking_closer_with_coordinates_in_the_photo(dlib_analyzer, photos, shrunk, caplog):
    assert dlib_analyzer.detect(shrunk[0.3]) == []  # normal detection misses the 27 px face
    with caplog.at_level(logging.WARNING):
        faces = detect_faces(dlib_analyzer, shrunk[0.3])
    assert len(faces) == 1 and "looking closer" in caplog.text
    full = dlib_analyzer.detect(photos["astronaut"])[0]
    expected = full.bbox * 0.3
    box = faces[0].bbox
    inter = np.clip(np.minimum(box[2:], expected[2:]) - np.maximum(box[:2], expected[:2]), 0, None).prod()
    union = np.prod(box[2:] - box[:2]) + np.prod(expected[2:] - expected[:2]) - inter
    assert inter / union > 0.5  # the same face, in the small photo's own pixels
    assert MIN_FACE_SIDE <= face_side(faces[0]) < 64
    assert face_condition([shrunk[0.3]], dlib_analyzer).faces  # usable


def test_too_small_face_gets_a_clear_error(dlib_analyzer, shrunk):
    faces = detect_faces(dlib_analyzer, shrunk[0.25])
    assert faces and face_side(faces[0]) < MIN_FACE_SIDE
    with pytest.raises(FaceTooSmallError, match=r"only \d+x\d+ px, below the 24 px minimum"):
        check_usable(faces[0], "x.png")
    with pytest.raises(NoFaceError, match="below the 24 px minimum"):
        face_condition([shrunk[0.25]], dlib_analyzer)


def test_no_retry_when_the_face_is_large(dlib_analyzer, photos, monkeypatch):
    monkeypatch.setattr(type(dlib_analyzer), "looking_closer", lambda self: pytest.fail("retried a large face"))
    assert detect_faces(dlib_analyzer, photos["grace_hopper"])


def test_looking_closer_configurations(dlib_analyzer):
    from instantid.face.antelopev2 import AntelopeV2FaceAnalyzer

    assert dlib_analyzer.looking_closer().upsample == dlib_analyzer.upsample + 1
    assert dlib_analyzer.upsample == 1  # the original is untouched
    assert AntelopeV2FaceAnalyzer(det_size=(640, 640)).looking_closer().det_size == (1280, 1280)


def test_describe_choice_for_a_pose_photo_without_a_flag(dlib_analyzer, photos):
    faces = dlib_analyzer.detect(photos["t1"])
    assert "crop the photo" in describe_choice(faces, 0, "pose.jpg", flag=None)


def _face():
    from instantid.face.types import Face

    return Face(bbox=np.zeros(4, np.float32), kps=np.zeros((5, 2), np.float32), score=1.0,
                embedding=np.ones(128, np.float32), backend="dlib")
