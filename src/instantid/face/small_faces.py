"""Small and distant faces in reference photos: look closer when detection finds nothing (or only a tiny
face), and refuse faces too small to use, with a clear error.

The retry runs the backend's `looking_closer()` analyzer on the same photo: dlib upsamples the photo once
more (finds faces down to ~20 px instead of ~40 px), antelopev2 detects at twice its det_size. Both map
boxes and keypoints back to the photo's own pixels, so callers see ordinary coordinates. The retry is
said in a warning, because it is slower and its faces are small.
"""

from __future__ import annotations

import logging

from ..errors import FaceTooSmallError
from .image import describe_source
from .types import Face, FaceAnalyzer

logger = logging.getLogger(__name__)

# Look closer when the largest face found has a shorter box side below this (or no face was found).
RETRY_BELOW_SIDE = 64
# Below this shorter box side a face is refused: its five keypoints are off by a large fraction of the
# face and its identity embedding (computed on a 112/150 px aligned crop) is mostly upscaling blur.
# The astronaut sample at 30% (153x153 px) gives a 27 px face (kept); at 25% a 22 px face (refused).
MIN_FACE_SIDE = 24


def face_side(face: Face) -> float:
    """The shorter side of the face box, in pixels."""
    x1, y1, x2, y2 = (float(v) for v in face.bbox)
    return min(x2 - x1, y2 - y1)


def detect_faces(analyzer: FaceAnalyzer, image, *, retry: bool = True) -> list[Face]:
    """All faces in `image`, largest first, looking closer (see the module docstring) when none or only a
    small one is found at first and the backend can; [] when there is none even then."""
    faces = analyzer.detect(image)
    if not retry or (faces and face_side(faces[0]) >= RETRY_BELOW_SIDE):
        return faces
    looking_closer = getattr(analyzer, "looking_closer", None)
    if looking_closer is None:
        return faces
    closer = looking_closer().detect(image)
    if len(closer) <= len(faces):
        return faces
    logger.warning("%s: %s at normal detection; looking closer (upscaled detection) found %d face(s), largest "
                   "%.0f px, coordinates mapped back to the photo", describe_source(image),
                   f"only {len(faces)} face(s)" if faces else "no face", len(closer), face_side(closer[0]))
    return closer


def check_usable(face: Face, name: str, min_side: float = MIN_FACE_SIDE) -> Face:
    """`face` when its box is at least `min_side` px on its shorter side; FaceTooSmallError otherwise."""
    side = face_side(face)
    if side < min_side:
        x1, y1, x2, y2 = (float(v) for v in face.bbox)
        raise FaceTooSmallError(
            f"the face in {name} is only {x2 - x1:.0f}x{y2 - y1:.0f} px, below the {min_side:.0f} px minimum "
            "(its keypoints and identity would be unreliable); use a closer or higher-resolution photo")
    return face
