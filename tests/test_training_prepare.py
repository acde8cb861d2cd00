"""`prepare-data` on real photos (dlib): face records, bad data counted and skipped, resumable, parallel."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from instantid.cli import main as cli_main
from instantid.training.data import read_prepared_dataset
from instantid.training.prepare import MANIFEST, REJECTED, REPORT, PrepareOptions, prepare_dataset
from test_training_helpers import BAD_ITEM_REASONS, PREPARE_MIN_SIZES, training_photos, write_table  # noqa: F401 (fixture)

OPTIONS = PrepareOptions(progress=False, **PREPARE_MIN_SIZES)


@pytest.fixture(scope="module")
def prepared(training_photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "data"
    assert cli_main(["prepare-data", str(training_photos), str(out), "--no-progress",
                     "--min-image-size", "96", "--min-face-size", "24"]) == 0
    return out


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_usable_photo_gets_a_face_record(prepared):
    rows = _rows(prepared / MANIFEST)
    assert len(rows) == 16
    for row in rows:
        assert np.asarray(row["kps"]).shape == (5, 2) and len(row["bbox"]) == 4 and row["caption"].startswith("a photo of")
        x1, y1, x2, y2 = row["bbox"]
        assert 0 <= x1 < x2 <= row["width"] and 0 <= y1 < y2 <= row["height"]
        embedding = np.load(prepared / row["embedding"])
        assert embedding.shape == (128,) and embedding.dtype == np.float32 and np.isfinite(embedding).all()
    info = json.loads((prepared / "dataset.json").read_text())
    assert info["backend"] == "dlib" and info["embedding_dim"] == 128


def test_bad_items_are_counted_and_skipped(prepared, capsys):
    report = json.loads((prepared / REPORT).read_text())
    assert report["rejected"] == BAD_ITEM_REASONS and report["usable"] == 16
    assert any("broken.jpg" in example for example in report["examples"]["corrupt_image"])
    assert any("sky.jpg" in example for example in report["examples"]["no_face"])
    assert {row["reason"] for row in _rows(prepared / REJECTED)} == {"corrupt_image", "missing_caption", "no_face"}


def test_rerun_resumes_and_repairs_a_torn_manifest(prepared, training_photos, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(prepared, out)
    lines = (out / MANIFEST).read_text().splitlines(keepends=True)
    # as if killed while writing: the last 3 rows lost, the one before cut in half
    (out / MANIFEST).write_text("".join(lines[:12]) + lines[12][:40])
    report = prepare_dataset(training_photos, out, OPTIONS)
    assert (report.added, report.already_done, report.usable) == (4, 14, 16)
    assert dict(report.rejected) == BAD_ITEM_REASONS  # earlier rejections still counted, not redone
    assert sorted(r["id"] for r in _rows(out / MANIFEST)) == sorted(r["id"] for r in _rows(prepared / MANIFEST))
    again = prepare_dataset(training_photos, out, OPTIONS)
    assert (again.added, again.already_done) == (0, 18)


def test_parallel_workers_give_the_same_records(prepared, training_photos, tmp_path):
    report = prepare_dataset(training_photos, tmp_path / "data", PrepareOptions(workers=2, progress=False, **PREPARE_MIN_SIZES))
    assert report.usable == 16 and dict(report.rejected) == BAD_ITEM_REASONS
    serial = {r["id"]: r for r in _rows(prepared / MANIFEST)}
    for row in _rows(tmp_path / "data" / MANIFEST):
        assert row["kps"] == serial[row["id"]]["kps"]
        np.testing.assert_array_equal(np.load(tmp_path / "data" / row["embedding"]),
                                      np.load(prepared / serial[row["id"]]["embedding"]))


def test_table_source_skips_unreadable_rows(training_photos, tmp_path):
    good = sorted(training_photos.glob("astronaut_*.jpg"))
    table = write_table(tmp_path, [
        {"file_name": str(good[0]), "caption": "an astronaut"},
        {"image": str(good[1]), "text": "an astronaut again"},
        "{not json",
        {"caption": "a row without an image"},
        {"file_name": str(good[2])},  # no caption
        {"file_name": "missing.jpg", "caption": "a file that is not there"},
    ])
    report = prepare_dataset(table, tmp_path / "data", OPTIONS)
    assert report.usable == 2
    assert dict(report.rejected) == {"unreadable_row": 2, "missing_caption": 1, "missing_image": 1}
    assert any("metadata.jsonl:3" in e for e in report.examples["unreadable_row"])


def test_csv_source_and_size_filters(training_photos, tmp_path):
    table = tmp_path / "pairs.csv"
    shutil.copy(training_photos / "grace_hopper_plain.jpg", tmp_path / "grace.jpg")
    shutil.copy(training_photos / "tom_hanks_plain.jpg", tmp_path / "tom.jpg")
    table.write_text("file_name,caption\ngrace.jpg,grace hopper\ntom.jpg,tom hanks\nbroken,row,with,extras\n")
    report = prepare_dataset(table, tmp_path / "data", PrepareOptions(progress=False, min_image_size=250,
                                                                      min_face_size=24))
    assert report.usable == 1 and dict(report.rejected) == {"image_too_small": 1, "unreadable_row": 1}
    faces = prepare_dataset(table, tmp_path / "faces", PrepareOptions(progress=False, min_image_size=0,
                                                                      min_face_size=2000))
    assert dict(faces.rejected) == {"face_too_small": 2, "unreadable_row": 1}


def test_training_reader_counts_unreadable_manifest_rows(prepared, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(prepared, out)
    rows = _rows(out / MANIFEST)
    broken = [json.dumps({**rows[0], "kps": [[1, 2]]}), "{torn", json.dumps({**rows[1], "embedding": "embeddings/x.npy"}),
              json.dumps({k: v for k, v in rows[2].items() if k != "caption"})]
    (out / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows[3:]) + "\n".join(broken) + "\n")
    dataset = read_prepared_dataset(out)
    assert len(dataset.items) == 13 and dataset.embedding_dim == 128
    assert dict(dataset.skipped_rows) == {"unreadable_row": 3, "missing_embedding": 1}


def test_mixing_face_backends_in_one_folder_is_refused(prepared, training_photos, tmp_path):
    from instantid.training.errors import TrainingDataError

    shutil.copytree(prepared, tmp_path / "data")
    with pytest.raises(TrainingDataError, match="prepared with the 'dlib' face backend"):
        prepare_dataset(training_photos, tmp_path / "data", PrepareOptions(backend="antelopev2", progress=False))
