"""`instantid faces` through the real entry point (instantid.cli.main)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from instantid.cli import main

FAKE_PACK_ROOT = Path(__file__).resolve().parents[2] / "shared/fixtures/fake-antelopev2"


def test_json_lists_six_faces_largest_first(photos, capsys):
    assert main(["faces", str(photos["t1"]), "--backend", "dlib", "--json"]) == 0
    faces = json.loads(capsys.readouterr().out)
    assert len(faces) == 6
    areas = [(x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in (f["bbox"] for f in faces)]
    assert areas == sorted(areas, reverse=True)
    assert all(f["backend"] == "dlib" and len(f["kps"]) == 5 and f["embedding_dim"] == 128 for f in faces)


def test_table_and_kps_image_at_the_photo_size(photos, tmp_path, capsys):
    out = tmp_path / "kps.png"
    assert main(["faces", str(photos["grace_hopper"]), "--kps-out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "1 face(s)" in printed and "[0] box" in printed and str(out) in printed
    kps_image = Image.open(out)
    assert kps_image.size == Image.open(photos["grace_hopper"]).size
    assert np.asarray(kps_image).max() > 0  # something was drawn


def test_index_picks_a_smaller_face_and_is_checked(photos, tmp_path, capsys):
    out = tmp_path / "third.png"
    assert main(["faces", str(photos["t1"]), "--index", "2", "--kps-out", str(out), "--json"]) == 0
    assert Image.open(out).size == (1280, 886)
    assert main(["faces", str(photos["t1"]), "--index", "9", "--kps-out", str(out)]) == 1
    assert "error: face index 9 is out of range" in capsys.readouterr().err


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["faces", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "examples:" in text and "instantid faces photo.jpg" in text and "--face-backend" in text
    assert "The default backend is dlib" in text


def test_corrupt_file_gives_one_error_line_and_exit_code_1(tmp_path, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert main(["faces", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "broken.jpg" in err and "\n" not in err


def test_antelopev2_backend_with_face_models_dir(photos, capsys):
    if not (FAKE_PACK_ROOT / "models/antelopev2/glintr100.onnx").is_file():
        pytest.skip(f"fake antelopev2 pack not found at {FAKE_PACK_ROOT}: it comes from the project's shared/ folder")
    argv = ["faces", str(photos["astronaut"]), "--face-backend", "antelopev2", "--face-models", str(FAKE_PACK_ROOT)]
    assert main(argv + ["--json"]) == 0
    faces = json.loads(capsys.readouterr().out)
    assert len(faces) == 1 and faces[0]["embedding_dim"] == 512
