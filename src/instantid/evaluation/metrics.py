"""Metrics: pure functions over features (embeddings, CLIP vectors, keypoints). No models here."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

# Face similarity of two DIFFERENT people, per recognizer (the baseline reports draw). dlib: the astronaut and
# Grace Hopper sample photos score 0.886 (the six different people of insightface's t1.jpg 0.81-0.91): dlib's
# similarities are high for everyone, so 0.9 is NOT "the same person" with dlib.
UNRELATED_PEOPLE = {"dlib": 0.886}


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors, in [-1, 1]."""
    return float(np.dot(unit(a), unit(b)))


def identity_centroid(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """The identity of several photos of one person: the mean of their unit embeddings, made unit."""
    if not len(embeddings):
        raise ValueError("identity_centroid needs at least one embedding")
    return unit(np.mean([unit(e) for e in embeddings], axis=0))


def identity_similarity(reference_embeddings: Sequence[np.ndarray], embedding: np.ndarray) -> float:
    """Face similarity of one generated face to the reference person (cosine to the centroid)."""
    return cosine_similarity(identity_centroid(reference_embeddings), embedding)


def copy_paste(sim_ref: float, sim_gt: float) -> float:
    """MultiID-Bench's copy-paste axis: Sim(Ref) - Sim(GT), the output's face similarity to the reference photo
    minus to a held-out photo of the same person (one the generator never saw). Near 0: the output looks like
    the person; clearly positive: it looks like that one photo (its expression, lighting, pose)."""
    return sim_ref - sim_gt


def clip_text_score(image_feature: np.ndarray, text_feature: np.ndarray) -> float:
    """CLIP-T: cosine between the image and its prompt in CLIP space (x100 for the usual scale)."""
    return cosine_similarity(image_feature, text_feature)


def clip_image_score(image_feature: np.ndarray, reference_features: Sequence[np.ndarray]) -> float:
    """CLIP-I: mean cosine between the image and each reference photo in CLIP space."""
    return float(np.mean([cosine_similarity(image_feature, r) for r in reference_features]))


def normalized_kps(kps: np.ndarray) -> np.ndarray:
    """Keypoints with their centroid at 0 and unit RMS distance to it (translation and scale removed)."""
    points = np.asarray(kps, dtype=np.float64).reshape(-1, 2)
    centred = points - points.mean(axis=0)
    rms = math.sqrt(float((centred**2).sum(axis=1).mean()))
    return centred / rms if rms > 0 else centred


def kps_distance(kps: np.ndarray, reference_kps: np.ndarray) -> float:
    """The "copy-paste" distance: RMS distance between two 5-point layouts after removing position and
    size (rotation is kept, so a tilted head counts). 0 = the same face geometry as the reference;
    ~0.05-0.1 for the same pose in another photo; 0.3+ for a clearly different pose."""
    a, b = normalized_kps(kps), normalized_kps(reference_kps)
    return math.sqrt(float(((a - b) ** 2).sum(axis=1).mean()))


def summary(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """Count, mean, median, std, min and max of the values that are numbers (None/NaN left out)."""
    kept = np.array([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))],
                    dtype=np.float64)
    if kept.size == 0:
        return {"n": 0, "mean": None, "median": None, "std": None, "min": None, "max": None}
    return {"n": int(kept.size), "mean": float(kept.mean()), "median": float(np.median(kept)),
            "std": float(kept.std()), "min": float(kept.min()), "max": float(kept.max())}


def detection_rate(detected: Iterable[bool]) -> float | None:
    flags = list(detected)
    return sum(flags) / len(flags) if flags else None
