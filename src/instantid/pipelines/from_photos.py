"""The higher-level entry: face photos in, images out. Runs face analysis, then the pipeline."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import FaceTooSmallError, ImageReadError, NoFaceError
from ..face.choice import report_choice, warn_if_different_people
from ..face.keypoints import average_embeddings, draw_kps, scale_kps
from ..face.small_faces import check_usable, detect_faces
from ..face.types import Face, FaceAnalyzer
from .sizing import default_output_size

logger = logging.getLogger(__name__)


@dataclass
class FaceCondition:
    """What InstantID conditions on: one (averaged) raw embedding and the keypoints to place the face at."""

    embedding: np.ndarray
    kps: np.ndarray  # [5, 2] in the pose image's pixels
    pose_size: tuple[int, int]  # (width, height) of the image the keypoints come from
    faces: list[Face] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # reference photos without a usable face

    def output_size(self, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """Explicit sizes win; otherwise the pose image's size, capped (see sizing.py)."""
        if width and height:
            return width, height
        auto_w, auto_h = default_output_size(self.pose_size)
        return width or auto_w, height or auto_h

    def scaled_kps(self, width: int, height: int) -> np.ndarray:
        """The keypoints in the pixels of a (width, height) output."""
        return scale_kps(self.kps, self.pose_size, (width, height))

    def kps_image(self, width: int, height: int) -> Image.Image:
        """The keypoint image redrawn at (width, height), so points stay round at any output size."""
        return draw_kps((width, height), self.scaled_kps(width, height))


def _name(photo) -> str:
    return os.fspath(photo) if isinstance(photo, (str, os.PathLike)) else f"<{type(photo).__name__}>"


def face_condition(face_photos: Sequence, analyzer: FaceAnalyzer, pose_photo=None,
                   face_index: int = 0) -> FaceCondition:
    """Analyse reference photos (embeddings averaged) and a pose photo (keypoints; default: first reference).

    A reference photo without a face, unreadable, or whose face is too small (face/small_faces.py) is reported
    by name and skipped; if none is left, NoFaceError lists them all. Nothing is chosen silently: the face
    used in a group photo is logged, and photos that look like different people are warned about
    (face/choice.py).
    """
    from ..face.image import image_size

    if isinstance(face_photos, (str, Path, Image.Image, np.ndarray)):
        face_photos = [face_photos]
    faces, sizes, skipped, names = [], [], [], []
    for photo in face_photos:
        try:
            found = detect_faces(analyzer, photo)  # looks closer for small faces (face/small_faces.py)
            size = image_size(photo)
        except ImageReadError as err:
            skipped.append(f"{_name(photo)}: {err}")
            continue
        if len(found) <= face_index:
            skipped.append(f"{_name(photo)}: no face" + (f" #{face_index}" if face_index else ""))
            continue
        try:
            faces.append(check_usable(found[face_index], _name(photo)))
        except FaceTooSmallError as err:
            skipped.append(str(err))
            continue
        report_choice(found, face_index, _name(photo))  # group photos: say which face (face/choice.py)
        sizes.append(size)
        names.append(_name(photo))
    warn_if_different_people(faces, names)
    if skipped:
        logger.warning("skipped reference photos: %s", "; ".join(skipped))
    if not faces:
        raise NoFaceError(
            "no usable face in the reference photos (" + "; ".join(skipped) + "). "
            "Use photos where the face is clearly visible, frontal and not tiny."
        )
    kps, pose_size = faces[0].kps, sizes[0]
    if pose_photo is not None:
        pose_faces = detect_faces(analyzer, pose_photo)
        if not pose_faces:
            raise NoFaceError(f"no face found in the pose photo {_name(pose_photo)}; it supplies the keypoints")
        report_choice(pose_faces, 0, f"the pose photo {_name(pose_photo)}", flag=None)
        kps, pose_size = pose_faces[0].kps, image_size(pose_photo)
    return FaceCondition(embedding=average_embeddings([f.embedding for f in faces]), kps=np.asarray(kps),
                         pose_size=pose_size, faces=faces, skipped=skipped)


def generate_from_photos(pipe, face_photos, prompt: str, *, analyzer: FaceAnalyzer, pose_photo=None,
                         width: int | None = None, height: int | None = None, **call_kwargs):
    """Run face analysis on the photos, then the pipeline. Returns (pipeline output, FaceCondition)."""
    condition = face_condition(face_photos, analyzer, pose_photo)
    if condition.embedding.shape[0] != pipe.face_embedding_dim:
        from ..errors import EmbeddingError

        raise EmbeddingError(
            f"the '{analyzer.name}' face backend gives {condition.embedding.shape[0]}-d embeddings but the loaded "
            f"adapter takes {pipe.face_embedding_dim}-d ones; use the backend the adapter was trained with "
            "(the released weights need antelopev2)"
        )
    width, height = condition.output_size(width, height)
    output = pipe(prompt=prompt, image_embeds=condition.embedding, image=condition.kps_image(width, height),
                  width=width, height=height, **call_kwargs)
    return output, condition
