"""The dlib backend on real photos: counts, keypoint geometry, identity, and awkward inputs."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from PIL import Image

from instantid.errors import NoFaceError
from instantid.face import FaceIndexError, analyze_faces, get_face_analyzer, get_reference_face
from instantid.face.dlib_backend import DlibFaceAnalyzer, face_recognition_models_dir
from huge_photo import HUGE_PASTE_AT, HUGE_PASTE_SIDE

EXPECTED_FACES = {"t1": 6, "astronaut": 1, "grace_hopper": 1, "tom_hanks": 1}
# Measured (dlib 20.0.1, see report): a photo made smaller, mirrored and re-saved as JPEG 50 stays
# within 0.36 of itself; other people are >= 0.58 away and >= 0.30 further than self.
MAX_SELF_DISTANCE = 0.4
MIN_MARGIN_TO_OTHERS = 0.2


@pytest.fixture(scope="module")
def found(dlib_analyzer, photos) -> dict[str, list]:
    return {name: dlib_analyzer.detect(path) for name, path in photos.items()}


@pytest.fixture(scope="module")
def people(found) -> dict[str, np.ndarray]:
    """Embedding of every person in the test photos, keyed "astronaut", ..., "t1[0]".."t1[5]"."""
    out = {name: faces[0].embedding for name, faces in found.items() if name != "t1"}
    out.update({f"t1[{i}]": face.embedding for i, face in enumerate(found["t1"])})
    return out


def assert_upright_face(face, image_size) -> None:
    (lex, ley), (rex, rey), (nx, ny), (lmx, lmy), (rmx, rmy) = face.kps
    x1, y1, x2, y2 = face.bbox
    assert 0 <= x1 < x2 <= image_size[0] and 0 <= y1 < y2 <= image_size[1]
    assert ((face.kps[:, 0] >= x1) & (face.kps[:, 0] <= x2)).all()
    assert ((face.kps[:, 1] >= y1) & (face.kps[:, 1] <= y2)).all()
    assert max(ley, rey) < ny < min(lmy, rmy), "eyes above nose above mouth corners"
    assert lex < rex and lmx < rmx


@pytest.mark.parametrize("name", EXPECTED_FACES)
def test_face_count_and_geometry(found, photos, name):
    faces = found[name]
    assert len(faces) == EXPECTED_FACES[name]
    size = Image.open(photos[name]).size
    for face in faces:
        assert face.backend == "dlib" and face.embedding.shape == (128,) and face.embedding.dtype == np.float32
        assert face.kps.shape == (5, 2) and face.extra["landmarks_68"].shape == (68, 2)
        assert_upright_face(face, size)
    areas = [face.area for face in faces]
    assert areas == sorted(areas, reverse=True)


def _smaller(image):
    return image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.LANCZOS)


def _jpeg50(image):
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=50)
    return Image.open(buffer)


def _mirrored(image):
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def _all_three(image):
    return _jpeg50(_mirrored(_smaller(image)))


# Each one-face photo under each change; t1 (six faces, slower) under all three changes at once.
IDENTITY_CASES = [
    pytest.param(name, change, id=f"{name}-{change.__name__[1:]}")
    for name in ("astronaut", "grace_hopper", "tom_hanks")
    for change in (_smaller, _jpeg50, _mirrored, _all_three)
] + [pytest.param("t1", _all_three, id="t1-all_three")]


@pytest.mark.parametrize("name, change", IDENTITY_CASES)
def test_identity_survives_resize_jpeg_and_mirror(dlib_analyzer, photos, people, name, change):
    changed_faces = dlib_analyzer.detect(change(Image.open(photos[name]).convert("RGB")))
    owners = [n for n in people if n == name or n.startswith(f"{name}[")]
    assert len(changed_faces) == len(owners)
    for owner in owners:
        # the changed photo's face that is this person's (nearest to the original embedding)
        distances = [float(np.linalg.norm(f.embedding - people[owner])) for f in changed_faces]
        face = changed_faces[int(np.argmin(distances))]
        self_distance = min(distances)
        others = {n: float(np.linalg.norm(face.embedding - e)) for n, e in people.items() if n != owner}
        nearest_other = min(others, key=others.get)
        assert self_distance < MAX_SELF_DISTANCE, owner
        assert others[nearest_other] > self_distance + MIN_MARGIN_TO_OTHERS, (owner, nearest_other, others)


# --- awkward inputs ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut_image(photos) -> Image.Image:
    return Image.open(photos["astronaut"]).convert("RGB")


def test_rgba_png(dlib_analyzer, astronaut_image, tmp_path):
    rgba = astronaut_image.convert("RGBA")
    alpha = np.full((512, 512), 255, np.uint8)
    alpha[:, :64] = 0  # a transparent strip
    rgba.putalpha(Image.fromarray(alpha))
    path = tmp_path / "cutout.png"
    rgba.save(path)
    assert len(dlib_analyzer.detect(path)) == 1


def test_exif_rotated_photo_is_found_upright(dlib_analyzer, astronaut_image, tmp_path):
    path = tmp_path / "camera.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees; viewers rotate it back clockwise
    astronaut_image.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    faces = dlib_analyzer.detect(path)
    assert len(faces) == 1
    assert_upright_face(faces[0], (512, 512))
    # Without the EXIF rotation the frontal detector sees a sideways face and finds nothing.
    assert dlib_analyzer.detect(np.asarray(Image.open(path))) == []


def test_huge_photo_is_downscaled_and_mapped_back(dlib_analyzer, huge_jpeg):
    faces = dlib_analyzer.detect(huge_jpeg)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].bbox
    # The astronaut's face sits at about (179, 83, 267, 171) of the 512 px photo, enlarged 12x.
    left, top = HUGE_PASTE_AT
    scale = HUGE_PASTE_SIDE / 512
    assert left + 150 * scale < x1 < left + 200 * scale and top + 50 * scale < y1 < top + 110 * scale
    assert_upright_face(faces[0], (20000, 20000))


def test_photo_without_a_face(dlib_analyzer):
    gradient = np.dstack([np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))] * 3)
    assert dlib_analyzer.detect(gradient) == []
    with pytest.raises(NoFaceError, match="no face found in the given 480x640x3 array; use a photo"):
        get_reference_face(gradient, analyzer=dlib_analyzer)


# --- the public API on this backend ----------------------------------------------------------


def test_reference_face_is_the_largest_and_index_is_checked(dlib_analyzer, found, photos):
    largest = get_reference_face(photos["t1"], analyzer=dlib_analyzer)
    np.testing.assert_allclose(largest.bbox, found["t1"][0].bbox)
    third = get_reference_face(photos["t1"], index=2, analyzer=dlib_analyzer)
    np.testing.assert_allclose(third.bbox, found["t1"][2].bbox)
    with pytest.raises(FaceIndexError, match="face index 6 is out of range.*has 6 face"):
        get_reference_face(photos["t1"], index=6, analyzer=dlib_analyzer)


def test_registry_builds_a_dlib_analyzer(photos):
    analyzer = get_face_analyzer("dlib", upsample=0)
    assert isinstance(analyzer, DlibFaceAnalyzer) and analyzer.upsample == 0
    assert len(analyzer.detect(photos["grace_hopper"])) == 1
    assert len(analyze_faces(photos["tom_hanks"], backend="dlib")) == 1
    with pytest.raises(ValueError, match="dlib"):
        get_face_analyzer("opencv")


def test_models_come_from_face_recognition_models_without_importing_it(found):
    folder = face_recognition_models_dir()
    assert (folder / "shape_predictor_68_face_landmarks.dat").is_file()
    assert (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file()
    assert "face_recognition_models" not in sys.modules  # its __init__ needs pkg_resources


def test_cnn_detector_option(photos):
    # The CNN (MMOD) detector is ~10-50x slower than HOG on CPU: try it on the small photo only.
    faces = DlibFaceAnalyzer(detector="cnn").detect(photos["tom_hanks"])
    assert len(faces) == 1
    assert_upright_face(faces[0], (112, 112))


def test_missing_model_dir_names_the_files(tmp_path, photos):
    from instantid.errors import FaceModelNotFoundError

    with pytest.raises(FaceModelNotFoundError, match="shape_predictor_68_face_landmarks.dat.*not found"):
        DlibFaceAnalyzer(model_dir=tmp_path).detect(photos["tom_hanks"])
