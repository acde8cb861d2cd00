"""Public face API: find faces, pick the reference face, draw its keypoints.

Backends load lazily: "antelopev2" (insightface; what the released InstantID weights need) and
"dlib" (offline, ships with pip packages). Build one analyzer with get_face_analyzer() and pass it
as `analyzer=` when analysing many photos; otherwise each call loads the models again.
"""

from __future__ import annotations

import importlib

from ..errors import FaceIndexError
from .choice import pick_face
from .image import load_image
from .keypoints import draw_kps
from .types import KEYPOINT_NAMES, Face, FaceAnalyzer

__all__ = [
    "Face", "FaceAnalyzer", "FaceIndexError", "KEYPOINT_NAMES", "analyze_faces", "draw_kps",
    "get_face_analyzer", "get_reference_face", "load_image",
]

# backend name -> (module, class)
BACKENDS = {
    "antelopev2": ("instantid.face.antelopev2", "AntelopeV2FaceAnalyzer"),
    "dlib": ("instantid.face.dlib_backend", "DlibFaceAnalyzer"),
    # the FLUX (InfiniteYou) weights' face path: antelopev2 detection, facexlib ArcFace unit-norm embedding
    "infiniteyou": ("instantid.face.infiniteyou", "InfiniteYouFaceAnalyzer"),
}



def get_face_analyzer(name: str = "antelopev2", **kwargs) -> FaceAnalyzer:
    """A new analyzer for backend `name`; kwargs go to its constructor."""
    if name not in BACKENDS:
        raise ValueError(f"unknown face backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    return getattr(importlib.import_module(module_name), class_name)(**kwargs)


def analyze_faces(image, backend: str = "antelopev2", analyzer: FaceAnalyzer | None = None, **kwargs) -> list[Face]:
    """All faces in `image`, largest first; [] when none. kwargs build the analyzer if none is given."""
    return (analyzer or get_face_analyzer(backend, **kwargs)).detect(image)


def get_reference_face(
    image, index: int = 0, analyzer: FaceAnalyzer | None = None, backend: str = "antelopev2", **kwargs
) -> Face:
    """The `index`-th largest face (0 = largest, the released code's choice), found as every entry finds it
    (choice.pick_face: the small-face retry, the choice logged). Raises NoFaceError / FaceIndexError."""
    return pick_face(analyzer or get_face_analyzer(backend, **kwargs), image, index, flag="index")
