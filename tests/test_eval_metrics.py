"""Evaluation metrics are pure functions over features: checked on constructed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from instantid.evaluation import metrics
from instantid.face.cache import CachedFaceAnalyzer, content_hash
from instantid.evaluation.head_pose import HeadPose, head_pose, project_generic_face

KPS = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 72.0], [45.0, 92.0], [75.0, 92.0]])


def test_similarity_and_identity_centroid():
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0])
    assert metrics.cosine_similarity(a, 3 * a) == pytest.approx(1.0)
    assert metrics.cosine_similarity(a, b) == pytest.approx(0.0)
    assert metrics.identity_similarity([a, b], a + b / 2) == pytest.approx(1.0)  # centroid of unit vectors
    with pytest.raises(ValueError):
        metrics.identity_centroid([])


def test_kps_distance_ignores_position_and_size_but_not_rotation():
    assert metrics.kps_distance(KPS * 2.5 + [100, -30], KPS) == pytest.approx(0.0, abs=1e-9)
    angle = math.radians(20)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    assert metrics.kps_distance(KPS @ rotation.T, KPS) > 0.2


def test_summary_skips_missing_values():
    stats = metrics.summary([0.5, None, float("nan"), 1.0])
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(0.75) and stats["max"] == 1.0
    assert metrics.summary([])["mean"] is None
    assert metrics.detection_rate([True, False, True, True]) == 0.75


@pytest.mark.parametrize("pose", [HeadPose(0, 0, 0), HeadPose(25, 0, 0), HeadPose(0, -15, 0), HeadPose(0, 0, 12),
                                  HeadPose(-20, 10, -5)])
def test_head_pose_recovers_a_projected_pose(pose):
    kps = project_generic_face(pose, (512, 512), centre=(230, 280))
    found = head_pose(kps, (512, 512))
    assert found.difference(pose)["total"] < 0.5


def test_head_pose_signs_and_mirror():
    turned = project_generic_face(HeadPose(20, 0, 0), (400, 400))
    assert turned[2, 0] > turned[:2, 0].mean()  # yaw > 0: nose toward the image's right
    mirrored = turned.copy()
    mirrored[:, 0] = 400 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # left/right swap places in a mirror
    assert head_pose(mirrored, (400, 400)).yaw == pytest.approx(-20, abs=0.5)


class CountingAnalyzer:
    name = "counting"
    embedding_dim = 3

    def __init__(self):
        self.calls = 0
        self.threshold = 0.5

    def detect(self, image):
        from instantid.face.types import Face

        self.calls += 1
        return [Face(bbox=np.array([0, 0, 10, 10], np.float32), kps=KPS.astype(np.float32), score=0.9,
                     embedding=np.array([1, 2, 3], np.float32), backend="counting")]


def test_face_cache_by_content_in_memory_and_on_disk(tmp_path):
    photo = tmp_path / "a.png"
    photo.write_bytes(b"not really a png, only hashed")
    renamed = tmp_path / "b.png"
    renamed.write_bytes(photo.read_bytes())
    inner = CountingAnalyzer()
    cached = CachedFaceAnalyzer(inner, cache_dir=tmp_path / "cache")
    first = cached.detect(photo)
    first[0].embedding[:] = 0  # callers get copies
    again = cached.detect(renamed)
    assert inner.calls == 1 and cached.hits == 1 and again[0].embedding.tolist() == [1, 2, 3]
    fresh = CachedFaceAnalyzer(CountingAnalyzer(), cache_dir=tmp_path / "cache")  # a new process, same disk
    assert fresh.detect(photo)[0].kps.shape == (5, 2) and fresh.analyzer.calls == 0
    other_settings = CountingAnalyzer()
    other_settings.threshold = 0.9  # different analyzer settings: a different cache
    assert CachedFaceAnalyzer(other_settings, cache_dir=tmp_path / "cache").detect(photo) and other_settings.calls == 1
    assert content_hash(np.zeros((2, 2), np.uint8)) != content_hash(np.zeros((2, 2), np.float32))
