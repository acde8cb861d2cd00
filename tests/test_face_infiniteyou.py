"""The FLUX family's face path (InfiniteYou's): antelopev2 detection cascade + facexlib's ArcFace, offline.

Plumbing only: the antelopev2 pack is the shared fake (a brightness box), the ArcFace checkpoint a fake of the
real architecture (random weights, saved like the real file). Neither says anything about accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from instantid.errors import CheckpointError, FaceModelNotFoundError
from instantid.face import get_face_analyzer
from instantid.face.arcface import (
    REPO_ENV,
    WEIGHTS_ENV,
    WEIGHTS_NAME,
    ArcFaceRecognizer,
    aligned_crop,
    find_arcface_weights,
    load_arcface,
)
from instantid.face.infiniteyou import InfiniteYouFaceAnalyzer
from instantid.face.types import Face

FAKE_PACK_ROOT = Path(__file__).resolve().parents[2] / "shared/fixtures/fake-antelopev2"


@pytest.fixture
def fake_pack_root() -> Path:
    if not (FAKE_PACK_ROOT / "models/antelopev2/glintr100.onnx").is_file():
        pytest.skip(f"fake antelopev2 pack not found at {FAKE_PACK_ROOT}: it comes from the project's shared/ "
                    "folder; clone the project with its shared/ beside the repository")
    return FAKE_PACK_ROOT


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No env vars, an empty cache, an empty offline HF cache: the weights can be found nowhere."""
    for env in (WEIGHTS_ENV, REPO_ENV, "INSTANTID_FACE_MODELS"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    # an installed facexlib (an empty package on sys.path) whose weights folder is empty too
    (tmp_path / "site" / "facexlib").mkdir(parents=True)
    (tmp_path / "site" / "facexlib" / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "facexlib", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return tmp_path


def test_offline_error_names_every_place_and_the_fix(nowhere):
    with pytest.raises(FaceModelNotFoundError) as caught:
        find_arcface_weights()
    message = str(caught.value)
    for expected in (WEIGHTS_NAME, f"${WEIGHTS_ENV} (not set)", "$INSTANTID_FACE_MODELS (not set)",
                     str(nowhere / "site" / "facexlib" / "weights"), str(nowhere / "xdg" / "instantid" / "facexlib"),
                     "Hugging Face cache", "github.com/xinntao/facexlib/releases/download/v0.1.0", "--arcface PATH"):
        assert expected in message
    with pytest.raises(FaceModelNotFoundError, match="weights=/no/such"):
        find_arcface_weights("/no/such")


def test_found_in_each_local_place(nowhere, fake_arcface, monkeypatch):
    folder = fake_arcface.parent
    assert find_arcface_weights(folder) == fake_arcface
    monkeypatch.setenv(WEIGHTS_ENV, str(fake_arcface))
    assert find_arcface_weights() == fake_arcface
    monkeypatch.delenv(WEIGHTS_ENV)
    cache = nowhere / "xdg" / "instantid" / "facexlib"
    cache.mkdir(parents=True)
    (cache / WEIGHTS_NAME).symlink_to(fake_arcface)
    assert find_arcface_weights() == cache / WEIGHTS_NAME


def test_embedding_as_infiniteyou_computes_it(fake_arcface, photos):
    """BGR crop aligned by norm_crop, [-1, 1], IR-SE50, unit norm: and the channel order matters."""
    from instantid.face import load_image

    network = load_arcface(fake_arcface)
    bgr = np.ascontiguousarray(load_image(photos["astronaut"])[:, :, ::-1])
    kps = np.array([[190, 170], [260, 160], [230, 210], [200, 250], [255, 245]], np.float32)
    embedding = ArcFaceRecognizer(fake_arcface).embed(bgr, kps)
    assert embedding.shape == (512,) and abs(np.linalg.norm(embedding) - 1) < 1e-5

    def net(crop):
        with torch.no_grad():
            return network(torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1)[0].numpy()

    crop = aligned_crop(bgr, kps)
    assert crop.shape == (112, 112, 3)
    assert np.abs(net(crop) - embedding).max() < 1e-5
    assert np.abs(net(crop[:, :, ::-1]) - embedding).max() > 1e-3  # an RGB crop would give another vector


def test_bad_checkpoints_refused(tmp_path, fake_arcface):
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(CheckpointError, match="not facexlib's ArcFace IR-SE50"):
        load_arcface(wrong)
    state = torch.load(fake_arcface, weights_only=True)
    state["output_layer.3.weight"] = state["output_layer.3.weight"][:256]
    shapes = tmp_path / "shapes.pth"
    torch.save(state, shapes)
    with pytest.raises(CheckpointError, match="not facexlib's ArcFace IR-SE50"):
        load_arcface(shapes)
    text = tmp_path / "page.pth"
    text.write_text("<html>404</html>")
    with pytest.raises(CheckpointError):
        load_arcface(text)


def test_detection_cascade_640_320_160():
    """640 first; 320 only when 640 finds nothing; then 160 (InfiniteYou's wrapper)."""
    analyzer = InfiniteYouFaceAnalyzer()
    assert [d.det_size for d in analyzer.detectors] == [(640, 640), (320, 320), (160, 160)]
    face = Face(bbox=np.array([10, 10, 50, 50], np.float32), kps=np.zeros((5, 2), np.float32), score=0.9,
                embedding=np.ones(512, np.float32), backend="antelopev2")
    tried = []

    class Detector:
        def __init__(self, size, found):
            self.det_size, self.found = (size, size), found

        def detect(self, image):
            tried.append(self.det_size[0])
            return self.found

    analyzer.detectors = [Detector(640, []), Detector(320, [face]), Detector(160, [face])]
    analyzer.recognizer.embed = lambda bgr, kps: np.full(512, 512 ** -0.5, np.float32)
    found = analyzer.detect(np.zeros((64, 64, 3), np.uint8))
    assert tried == [640, 320]
    assert found[0].backend == "infiniteyou" and found[0].extra["detection_size"] == 320
    analyzer.detectors = [Detector(640, []), Detector(320, []), Detector(160, [])]
    tried.clear()
    assert analyzer.detect(np.zeros((64, 64, 3), np.uint8)) == [] and tried == [640, 320, 160]


def test_analyzer_end_to_end_offline(fake_pack_root, fake_arcface, photos):
    analyzer = get_face_analyzer("infiniteyou", model_dir=fake_pack_root, arcface=fake_arcface)
    faces = analyzer.detect(photos["astronaut"])
    assert len(faces) == 1
    face = faces[0]
    assert face.backend == "infiniteyou" and face.embedding.shape == (512,)
    assert abs(float(np.linalg.norm(face.embedding)) - 1) < 1e-5  # unit norm: what the FLUX weights take
    assert face.extra["detection_size"] == 640
