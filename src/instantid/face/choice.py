"""Which face of a photo is used, said out loud; and a check that several reference photos show one person.

`pick_face` is the one way every entry (generate's references and pose photo, swap's target, the
multi-identity layout, the service) picks a face: detection with the small-face retry (small_faces.py),
faces numbered largest first, the choice logged, errors naming the photo.

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

from ..errors import FaceIndexError, NoFaceError
from .image import describe_source
from .small_faces import detect_faces
from .types import Face, FaceAnalyzer

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


NO_FACE_HINT = "; use a photo where the face is clearly visible, frontal, at least ~80 px wide"


def pick_faces(analyzer: FaceAnalyzer, image, count: int, *, what: str | None = None,
               need: str = "are needed") -> list[Face]:
    """The `count` largest faces of `image` (largest first; found with the small-face retry); NoFaceError naming
    the photo (`what`, default its name) when it has fewer: "<what> has N face(s) but <count> <need>"."""
    faces = detect_faces(analyzer, image)
    if len(faces) < count:
        raise NoFaceError(f"{what or describe_source(image)} has {len(faces)} face(s) but {count} {need}")
    return faces[:count]


def pick_face(analyzer: FaceAnalyzer, image, index: int = 0, *, what: str | None = None,
              flag: str | None = "--face-index", need: str = NO_FACE_HINT) -> Face:
    """The `index`-th largest face of `image` (0 = largest, the released code's choice; ties: types.
    sort_largest_first), found with the small-face retry and logged when the photo has several (`flag`: how
    to pick another). NoFaceError when there is none, FaceIndexError when `index` is past the last."""
    what = what or describe_source(image)
    faces = detect_faces(analyzer, image)
    if not faces:
        raise NoFaceError(f"no face found in {what}{need}")
    if not -len(faces) <= index < len(faces):
        raise FaceIndexError(f"face index {index} is out of range: {what} has {len(faces)} face(s), numbered 0 to "
                             f"{len(faces) - 1} from largest to smallest"
                             + (f"; pick one with {flag} N" if flag else ""))
    report_choice(faces, index, what, flag)
    return faces[index]


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
