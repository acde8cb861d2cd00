"""Which face of a photo is used, said out loud; and a check that several reference photos show one person.

Group photos: faces are numbered largest first (ties: detector score, then position; see
types.sort_largest_first). When a photo has several faces the choice is logged with its number and box,
and how to pick another (--face-index / face_index=).

Several reference photos are averaged into one identity (the paper's rule). Averaging two different
people gives neither of them, so `different_people` lists the pairs whose embeddings' cosine similarity
is below the backend's SAME_PERSON_THRESHOLD, and the caller warns before averaging.
"""

from __future__ import annotations

import logging
from itertools import combinations
from typing import Sequence

import numpy as np

from .types import Face

logger = logging.getLogger(__name__)

# Cosine similarity of raw embeddings below which two faces are taken for different people.
# dlib: measured on the sample photos, the six different people of t1.jpg score 0.81-0.91 with each other
#   and the astronaut / Grace Hopper / Tom Hanks photos 0.87-0.89, while one photo re-encoded, resized,
#   mirrored or greyed scores 0.99+. dlib's 128-d space is crowded: 0.93 flags people the numbers separate,
#   and it may also flag two very different photos of one person (it is only a warning).
# antelopev2 (ArcFace glintr100): different people score around 0, the same person typically 0.4-0.8;
#   0.3 is the usual verification threshold for insightface's recognizers (not measured here: no weights).
SAME_PERSON_THRESHOLD = {"dlib": 0.93, "antelopev2": 0.3}


def box_text(face: Face) -> str:
    return ",".join(f"{float(v):.0f}" for v in face.bbox)


def describe_choice(faces: Sequence[Face], index: int, name: str, flag: str | None = "--face-index") -> str:
    """One line: which face of `name` is used, and how to pick another (`flag`; None: crop the photo)."""
    face = faces[index]
    others = ", ".join(f"#{i} {box_text(f)}" for i, f in enumerate(faces) if i != index)
    how = f"pick another with {flag} N (0 = largest)" if flag else "crop the photo to pick another"
    return (f"{name} has {len(faces)} faces; using #{index} (box {box_text(face)}, score {float(face.score):.2f}"
            f"{', the largest' if index == 0 else ''}); others: {others}; {how}")


def report_choice(faces: Sequence[Face], index: int, name: str, flag: str | None = "--face-index") -> None:
    """Log which face is used when the photo has more than one (never a silent choice)."""
    if len(faces) > 1:
        logger.warning(describe_choice(faces, index, name, flag))


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denominator) if denominator > 0 else 0.0


def different_people(faces: Sequence[Face], names: Sequence[str],
                     threshold: float | None = None) -> list[tuple[str, str, float]]:
    """(name, name, similarity) for every pair of faces below the same-person threshold of their backend
    (or `threshold`); [] when the backend has no documented threshold."""
    if len(faces) < 2:
        return []
    if threshold is None:
        threshold = SAME_PERSON_THRESHOLD.get(faces[0].backend)
        if threshold is None:
            return []
    return [(names[i], names[j], similarity) for i, j in combinations(range(len(faces)), 2)
            if (similarity := cosine(faces[i].embedding, faces[j].embedding)) < threshold]


def warn_if_different_people(faces: Sequence[Face], names: Sequence[str]) -> list[tuple[str, str, float]]:
    """Warn (before averaging) when reference photos seem to show different people; returns the pairs."""
    pairs = different_people(faces, names)
    if pairs:
        threshold = SAME_PERSON_THRESHOLD[faces[0].backend]
        listed = "; ".join(f"{a} vs {b}: {s:.3f}" for a, b, s in pairs)
        logger.warning("the --face photos may show different people (%s similarity below %.2f: %s); their "
                       "embeddings are averaged into one identity, which looks like none of them. Use photos of "
                       "one person, or --face-index to pick the right face in a group photo",
                       faces[0].backend, threshold, listed)
    return pairs
