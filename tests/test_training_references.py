"""Paired references (--reference same|other|mixed:P), identity labels (column, folder per person,
--group-identities clustering) and the copy-paste score (Sim(Ref) - Sim(GT))."""

from __future__ import annotations

import json

import numpy as np
import pytest

from instantid.training.errors import TrainingConfigError
from instantid.training.references import IdentityGroups, ReferenceMode, pick_reference


def test_reference_modes_parse_and_refuse_nonsense():
    assert ReferenceMode.parse("same") == ReferenceMode(0.0) and not ReferenceMode.parse("same").pairs
    assert ReferenceMode.parse("other") == ReferenceMode(1.0)
    assert ReferenceMode.parse("mixed:0.25") == ReferenceMode(0.25)
    for bad in ("mixed:1.5", "mixed:x", "others", ""):
        with pytest.raises(TrainingConfigError, match="--reference"):
            ReferenceMode.parse(bad)


def test_other_takes_another_photo_of_the_same_person_and_never_crosses_people():
    labels = ["a", "a", "a", "b", "b", None, "c"]
    groups = IdentityGroups(labels)
    rng = np.random.default_rng(0)
    for index, label in enumerate(labels):
        picks = {pick_reference(ReferenceMode(1.0), groups, index, rng) for _ in range(30)}
        if label in (None, "c"):  # unlabelled, or nobody else: its own photo
            assert picks == {index}
        else:
            assert index not in picks and {labels[p] for p in picks} == {label}
    assert groups.pairable() == 5
    same = [pick_reference(ReferenceMode(0.0), groups, i, rng) for i in range(len(labels))]
    assert same == list(range(len(labels)))
    mixed = [pick_reference(ReferenceMode(0.5), groups, 0, np.random.default_rng(s)) for s in range(200)]
    assert 0.3 < np.mean([m != 0 for m in mixed]) < 0.7


def test_identity_labels_from_a_column_and_from_a_folder_per_person(tmp_path):
    from instantid.training.sources import read_source

    (tmp_path / "alice").mkdir()
    (tmp_path / "bob").mkdir()
    for person in ("alice", "bob"):
        for n in range(2):
            (tmp_path / person / f"{n}.jpg").write_bytes(b"x")
            (tmp_path / person / f"{n}.txt").write_text(f"{person} {n}")
    items, _ = read_source(tmp_path, identity_from_folder=True)
    assert sorted(i.identity for i in items) == ["alice", "alice", "bob", "bob"]
    assert all(i.identity is None for i in read_source(tmp_path)[0])
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"file_name": "alice/0.jpg", "caption": "c", "identity": "p7"}) + "\n")
    assert read_source(table)[0][0].identity == "p7"


def test_clustering_links_photos_of_one_person_at_the_documented_threshold():
    from instantid.training.identities import group, linked

    rng = np.random.default_rng(0)
    people = rng.normal(size=(3, 128)) * 0.15  # dlib-like spread: different people ~1.7 apart
    embeddings = np.concatenate([p + rng.normal(size=(4, 128)) * 0.02 for p in people])  # ~0.3 within a person
    groups = group(len(embeddings), linked(embeddings, "dlib"))
    assert groups == [0] * 4 + [1] * 4 + [2] * 4
    arc = np.concatenate([p / np.linalg.norm(p) + rng.normal(size=(2, 128)) * 0.03 for p in people])
    assert group(len(arc), linked(arc, "antelopev2")) == [0, 0, 1, 1, 2, 2]


def test_group_identities_labels_a_prepared_folder(tmp_path):
    from instantid.training.identities import group_identities

    (tmp_path / "dataset.json").write_text(json.dumps({"backend": "dlib", "embedding_dim": 4}))
    rows = []
    vectors = [[0, 0, 0, 0], [0.1, 0, 0, 0], [2, 2, 2, 2]]
    for n, vector in enumerate(vectors):
        np.save(tmp_path / f"{n}.npy", np.asarray(vector, np.float32))
        rows.append({"id": str(n), "embedding": f"{n}.npy", **({"identity": "kept"} if n == 2 else {})})
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = group_identities(tmp_path)
    labels = [json.loads(line)["identity"] for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert labels[0] == labels[1] != "kept" and labels[2] == "kept"
    assert report["rule"] == "distance" and report["threshold"] == 0.5 and report["labelled_now"] == 2


def test_folder_dataset_pairs_embeddings_but_keeps_the_targets_keypoints(tmp_path):
    from pathlib import Path

    from instantid.training.data import InstantIDDataset, TrainingItem, make_buckets

    items = []
    for n, person in enumerate(["a", "a", "b"]):
        np.save(tmp_path / f"{n}.npy", np.full(4, n, np.float32))
        kps = np.array([[10, 10], [20, 10], [15, 15], [11, 20], [19, 20]], np.float32) + n
        items.append(TrainingItem(str(n), Path("unused.jpg"), "c", 64, 64, (5.0, 5.0, 30.0, 30.0), kps,
                                  tmp_path / f"{n}.npy", person))
    buckets = make_buckets(32, 16, 1.0)
    own = InstantIDDataset(items, buckets)
    paired = InstantIDDataset(items, buckets, references=(ReferenceMode(1.0), IdentityGroups(["a", "a", "b"]), 0))
    assert [paired.reference_index(i) for i in range(3)] == [1, 0, 2]
    from instantid.training.data import conditions

    for index in range(3):
        plan = own.crop_plan(index)
        mine = conditions(items[index], plan, np.load(items[paired.reference_index(index)].embedding_file))
        assert float(mine["face_embedding"][0]) == paired.reference_index(index)
        np.testing.assert_array_equal(mine["kps_image"], conditions(items[index], plan, np.zeros(4))["kps_image"])


def test_copy_paste_score_in_eval_with_a_held_out_photo():
    from instantid.evaluation import metrics
    from instantid.evaluation.face_features import FaceFeatures
    from instantid.evaluation.scoring import evaluate

    assert metrics.copy_paste(0.9, 0.6) == pytest.approx(0.3)
    vectors = {"ref": [1.0, 0.0, 0.0], "held": [0.6, 0.8, 0.0], "copy": [1.0, 0.05, 0.0], "fair": [0.85, 0.5, 0.0]}

    class Fake:
        name = "fake"

        def __call__(self, image):
            return FaceFeatures((64, 64), 1, np.asarray(vectors[image]), np.zeros((5, 2)) + np.arange(5)[:, None])

    result = evaluate(["ref"], ["copy", "fair"], [Fake()], held_out=["held"])
    copy, fair = result.scores
    assert copy.copy_paste["fake"] > 0.3 > fair.copy_paste["fake"]
    assert copy.copy_paste["fake"] == pytest.approx(copy.similarity["fake"] - copy.sim_gt["fake"])
    row = result.rows()[0]
    assert "sim_gt_fake" in row and "copy_paste_fake" in row
    assert "copy_paste_fake" in result.aggregate()
    assert "sim_gt_fake" not in evaluate(["ref"], ["copy"], [Fake()]).rows()[0]
