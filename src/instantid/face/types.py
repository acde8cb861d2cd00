"""The face record every backend returns, and the analyzer interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

# Order of the five keypoints, as insightface and the released InstantID code use it.
# "left" is the image's left (smaller x on a frontal face).
KEYPOINT_NAMES = ("left_eye", "right_eye", "nose", "left_mouth", "right_mouth")


@dataclass(frozen=True)
class Face:
    """One detected face, in the coordinates of the image it was found in.

    bbox: [x1, y1, x2, y2] float32. kps: [5, 2] float32 in KEYPOINT_NAMES order.
    embedding: 1-D float32 identity vector, raw (not L2-normalised); 512-d for antelopev2,
    128-d for dlib. score: detector confidence. backend: the analyzer that produced it.
    """

    bbox: np.ndarray
    kps: np.ndarray
    score: float
    embedding: np.ndarray
    backend: str
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = (float(v) for v in self.bbox)
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    @property
    def normed_embedding(self) -> np.ndarray:
        norm = float(np.linalg.norm(self.embedding))
        return self.embedding / norm if norm > 0 else self.embedding

    def to_dict(self, with_embedding: bool = False) -> dict:
        """A JSON-ready dict (lists of floats)."""
        out = {
            "bbox": [round(float(v), 2) for v in self.bbox],
            "kps": [[round(float(x), 2), round(float(y), 2)] for x, y in self.kps],
            "score": round(float(self.score), 4),
            "backend": self.backend,
            "embedding_dim": int(self.embedding.shape[0]),
        }
        if with_embedding:
            out["embedding"] = [float(v) for v in self.embedding]
        return out


class FaceAnalyzer(Protocol):
    """What a face backend provides. Faces come back largest first."""

    name: str
    embedding_dim: int

    def detect(self, image) -> list[Face]:
        """All faces in `image` (path, PIL image or array), largest first; [] when none."""
        ...


def sort_largest_first(faces: Sequence[Face]) -> list[Face]:
    """Faces ordered by bbox area, largest first (the released code's reference-face rule).

    Equal areas (common with dlib's integer boxes: re-saving insightface's t1.jpg as JPEG q92 makes two of
    its six faces 130x130) are ordered by detector score, higher first, then by position (top, then left),
    never by the order the detector happened to report them in."""
    return sorted(faces, key=lambda f: (-f.area, -float(f.score), float(f.bbox[1]), float(f.bbox[0])))
