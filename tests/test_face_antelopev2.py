"""The antelopev2 backend without real weights: model discovery, errors, conversion, plumbing.

The plumbing tests use the FAKE model pack from the project's shared/ folder: it has antelopev2's
file layout and tensor interfaces but no trained weights (its "face" is a brightness box).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from instantid.errors import FaceModelNotFoundError, InstantIDError
from instantid.face import get_face_analyzer
from instantid.face.antelopev2 import (
    DEFAULT_REPO_ID,
    MODELS_ENV,
    REPO_ENV,
    AntelopeV2FaceAnalyzer,
    download_antelopev2,
    face_from_insightface,
    find_antelopev2,
)

FAKE_PACK_ROOT = Path(__file__).resolve().parents[2] / "shared/fixtures/fake-antelopev2"
FAKE_PACK_FILES = ("scrfd_10g_bnkps.onnx", "glintr100.onnx")


@pytest.fixture
def fake_pack_root() -> Path:
    if not (FAKE_PACK_ROOT / "models/antelopev2/glintr100.onnx").is_file():
        pytest.skip(
            f"fake antelopev2 pack not found at {FAKE_PACK_ROOT}: the fixture comes from the project's "
            "shared/ folder; clone the project with its shared/ beside the repository"
        )
    return FAKE_PACK_ROOT


@pytest.fixture
def isolated_hub(tmp_path, monkeypatch) -> Path:
    """No $INSTANTID_FACE_MODELS, an empty HF cache, offline: nothing can be found or fetched."""
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.delenv(REPO_ENV, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub read the environment when it was imported; set its offline switch directly too.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    cache = tmp_path / "hf_cache"
    cache.mkdir()
    return cache


# --- (a) nothing installed -------------------------------------------------------------------


def test_missing_models_error_lists_places_files_and_command(isolated_hub, tmp_path, monkeypatch):
    empty = tmp_path / "empty_models"
    empty.mkdir()
    monkeypatch.setenv(MODELS_ENV, str(empty))
    with pytest.raises(FaceModelNotFoundError) as caught:
        find_antelopev2(cache_dir=isolated_hub)
    message = str(caught.value)
    assert f"${MODELS_ENV}={empty}" in message
    assert f"Hugging Face cache at {isolated_hub} for repo {DEFAULT_REPO_ID}" in message
    assert "models/antelopev2/" in message and "scrfd_10g_bnkps.onnx" in message and "glintr100.onnx" in message
    assert "download_antelopev2(" in message


def test_explicit_model_dir_is_the_only_place_searched(isolated_hub, tmp_path):
    with pytest.raises(FaceModelNotFoundError, match=rf"searched: model_dir={re.escape(str(tmp_path))}\. To fix"):
        find_antelopev2(tmp_path, cache_dir=isolated_hub)


def test_analyzer_raises_the_same_error_on_first_use(isolated_hub, tmp_path):
    analyzer = AntelopeV2FaceAnalyzer(cache_dir=isolated_hub)  # constructing loads nothing
    with pytest.raises(FaceModelNotFoundError, match="antelopev2 face models not found"):
        analyzer.detect(np.zeros((64, 64, 3), np.uint8))


# --- (b) download requested while offline ----------------------------------------------------


def test_download_while_offline(isolated_hub):
    with pytest.raises(FaceModelNotFoundError, match="could not download.*HF_HUB_OFFLINE"):
        download_antelopev2(cache_dir=isolated_hub)


def test_download_when_the_hub_is_unreachable(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    # Nothing listens on port 9 (discard) locally: the connection is refused at once.
    with pytest.raises(FaceModelNotFoundError, match="could not download .* repo someone/antelopev2: "):
        download_antelopev2("someone/antelopev2", cache_dir=tmp_path, endpoint="http://127.0.0.1:9")


def test_analyzer_with_download_asked_while_offline(isolated_hub):
    analyzer = AntelopeV2FaceAnalyzer(download=True, cache_dir=isolated_hub)
    with pytest.raises(FaceModelNotFoundError, match="could not download"):
        analyzer.detect(np.zeros((64, 64, 3), np.uint8))


# --- (c) conversion --------------------------------------------------------------------------


def test_face_from_insightface_keeps_the_raw_embedding():
    embedding = np.arange(512, dtype=np.float32)
    fake = SimpleNamespace(
        bbox=np.array([10, 20, 110, 140], np.float32),
        kps=np.array([[40, 60], [80, 60], [60, 90], [45, 115], [75, 115]], np.float32),
        det_score=np.float32(0.87),
        embedding=embedding,
    )
    face = face_from_insightface(fake)
    assert face.backend == "antelopev2" and face.score == pytest.approx(0.87)
    np.testing.assert_array_equal(face.embedding, embedding)  # not normalised
    np.testing.assert_array_equal(face.bbox, fake.bbox)
    half = face_from_insightface(fake, scale=0.5)  # detected on a half-size copy
    np.testing.assert_array_equal(half.bbox, fake.bbox * 2)
    np.testing.assert_array_equal(half.kps, fake.kps * 2)
    with pytest.raises(InstantIDError, match="glintr100.onnx"):
        face_from_insightface(SimpleNamespace(**{**vars(fake), "embedding": None}))


def test_device_must_be_known():
    with pytest.raises(ValueError, match="cpu"):
        AntelopeV2FaceAnalyzer(device="tpu")


# --- (d) plumbing with the fake pack ---------------------------------------------------------


def _assert_one_raw_face(faces, size=(512, 512)):
    assert len(faces) == 1
    face = faces[0]
    assert face.backend == "antelopev2" and face.embedding.shape == (512,) and face.embedding.dtype == np.float32
    assert float(np.linalg.norm(face.embedding)) > 2  # raw: the fake recogniser's norms are ~20
    x1, y1, x2, y2 = face.bbox
    assert -2 <= x1 < x2 <= size[0] + 2 and -2 <= y1 < y2 <= size[1] + 2


def test_fake_pack_from_root_layout(fake_pack_root, photos):
    analyzer = AntelopeV2FaceAnalyzer(fake_pack_root)
    _assert_one_raw_face(analyzer.detect(photos["astronaut"]))
    assert analyzer.pack_dir == (fake_pack_root / "models/antelopev2").resolve()


def test_fake_pack_given_as_the_antelopev2_folder_itself(fake_pack_root, photos):
    analyzer = get_face_analyzer("antelopev2", model_dir=fake_pack_root / "models/antelopev2")
    _assert_one_raw_face(analyzer.detect(photos["astronaut"]))


def test_fake_pack_from_env_var_is_not_fooled_by_an_antelopev2_folder_in_cwd(
    fake_pack_root, photos, tmp_path, monkeypatch
):
    (tmp_path / "antelopev2").mkdir()  # insightface would use this (empty) folder over `root`
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(MODELS_ENV, str(fake_pack_root))
    _assert_one_raw_face(AntelopeV2FaceAnalyzer().detect(photos["astronaut"]))


def test_fake_pack_from_the_hugging_face_cache(fake_pack_root, photos, isolated_hub):
    # The cache layout huggingface_hub writes: refs/main names the snapshot folder holding the files.
    repo_dir = isolated_hub / f"models--{DEFAULT_REPO_ID.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    for name in FAKE_PACK_FILES:
        shutil.copy(fake_pack_root / "models/antelopev2" / name, snapshot / name)
    assert find_antelopev2(cache_dir=isolated_hub) == snapshot.resolve()
    _assert_one_raw_face(AntelopeV2FaceAnalyzer(cache_dir=isolated_hub).detect(photos["astronaut"]))


def test_looking_closer_detects_at_twice_the_size_in_the_photo_s_pixels(fake_pack_root, photos, monkeypatch):
    """The small-face retry (face/small_faces.py): SCRFD runs at 1280x1280, boxes come back in photo pixels."""
    from insightface.app import FaceAnalysis

    prepared = []  # the detector sizes insightface is asked for, in order
    real_prepare = FaceAnalysis.prepare

    def prepare(self, *args, **kwargs):
        prepared.append(tuple(kwargs["det_size"]))
        return real_prepare(self, *args, **kwargs)

    monkeypatch.setattr(FaceAnalysis, "prepare", prepare)
    analyzer = AntelopeV2FaceAnalyzer(fake_pack_root)
    closer = analyzer.looking_closer()
    first, second = analyzer.detect(photos["astronaut"]), closer.detect(photos["astronaut"])
    assert prepared == [(640, 640), (1280, 1280)]
    assert np.allclose(first[0].bbox, second[0].bbox, atol=2)
