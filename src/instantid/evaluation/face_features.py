"""Face extractor: for one image and one recognizer, whether a face is found, its identity embedding
and its five keypoints (the largest face, as InstantID picks it)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FaceModelNotFoundError
from ..face.types import FaceAnalyzer
from ..face.cache import CachedFaceAnalyzer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaceFeatures:
    image_size: tuple[int, int]  # (width, height)
    faces_found: int
    embedding: np.ndarray | None = None  # raw, of the largest face
    kps: np.ndarray | None = None  # [5, 2] pixels, KEYPOINT_NAMES order
    bbox: np.ndarray | None = None

    @property
    def detected(self) -> bool:
        return self.faces_found > 0


class FaceExtractor:
    """Features of the largest face, from one face analyser (its name is the recognizer's name)."""

    def __init__(self, analyzer: FaceAnalyzer) -> None:
        self.analyzer = analyzer
        self.name = analyzer.name

    def __call__(self, image) -> FaceFeatures:
        from ..face.image import image_size

        faces = self.analyzer.detect(image)
        size = image_size(image)
        if not faces:
            return FaceFeatures(size, 0)
        face = faces[0]
        return FaceFeatures(size, len(faces), face.embedding, np.asarray(face.kps, dtype=np.float64), face.bbox)


def available_face_extractors(names: list[str] | None = None, *, face_models: str | Path | None = None,
                              cache_dir: str | Path | None = None) -> tuple[list[FaceExtractor], list[str]]:
    """Extractors for the recognizers asked for (default: every one available: antelopev2 when its
    models are on disk, dlib always), and notes on those left out."""
    from ..face import get_face_analyzer

    wanted = names or ["antelopev2", "dlib"]
    extractors, notes = [], []
    for name in wanted:
        kwargs = {"model_dir": face_models} if name == "antelopev2" and face_models else {}
        analyzer = get_face_analyzer(name, **kwargs)
        if name == "antelopev2":
            try:
                from ..face.antelopev2 import find_antelopev2

                find_antelopev2(face_models)
            except FaceModelNotFoundError as err:
                if names:  # asked for by name: its absence is an error
                    raise
                notes.append(f"antelopev2 left out: its face models are not on this machine ({str(err).splitlines()[0]})")
                continue
        extractors.append(FaceExtractor(CachedFaceAnalyzer(analyzer, cache_dir=cache_dir)))
    return extractors, notes
