"""What InstantID conditions on, from face photos: one (averaged) identity embedding and the keypoints to
place the face at (`FaceCondition`), made by analysing reference photos and an optional pose photo.

Every entry (generate, swap, multi-identity, the service) analyses photos here, so skipped photos, the
face chosen in a group photo and the small-face retry are the same everywhere (face/choice.pick_face).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import FaceTooSmallError, ImageReadError, NoFaceError, UsageError
from ..face.choice import pick_face, warn_if_different_people
from ..face.keypoints import average_embeddings, check_kps, draw_kps, scale_kps
from ..face.small_faces import check_usable
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

    @property
    def backend(self) -> str | None:
        return self.faces[0].backend if self.faces else None

    def output_size(self, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """The output size, decided here for every entry: explicit sizes win; otherwise the pose image's
        size, capped (see sizing.py)."""
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

    def with_kps(self, numbers, size: tuple[int, int]) -> "FaceCondition":
        """The same identity placed at explicit keypoints: 10 numbers (left eye, right eye, nose, left and
        right mouth corner; x,y each) in pixels of an output of `size` (width, height)."""
        kps = check_kps(numbers, "--kps").astype(np.float32)
        if (kps < 0).any() or (kps[:, 0] >= size[0]).any() or (kps[:, 1] >= size[1]).any():
            raise UsageError(f"--kps points must lie inside the {size[0]}x{size[1]} output")
        return replace(self, kps=kps, pose_size=tuple(size))


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

    if analyzer is None:
        raise UsageError("face photos need a face analyzer: pass analyzer=get_face_analyzer(...)")
    if isinstance(face_photos, (str, Path, Image.Image, np.ndarray)):
        face_photos = [face_photos]
    faces, sizes, skipped, names = [], [], [], []
    for photo in face_photos:
        try:
            face = pick_face(analyzer, photo, face_index, what=_name(photo))  # group photos: the choice is logged
            size = image_size(photo)
            faces.append(check_usable(face, _name(photo)))
        except ImageReadError as err:
            skipped.append(f"{_name(photo)}: {err}")
            continue
        except FaceTooSmallError as err:
            skipped.append(str(err))
            continue
        except NoFaceError:  # none, or no face #face_index (FaceIndexError)
            skipped.append(f"{_name(photo)}: no face" + (f" #{face_index}" if face_index else ""))
            continue
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
    condition = FaceCondition(embedding=average_embeddings([f.embedding for f in faces]), kps=np.asarray(faces[0].kps),
                              pose_size=sizes[0], faces=faces, skipped=skipped)
    return with_pose_from(condition, analyzer, pose_photo) if pose_photo is not None else condition


def as_face_condition(face_photos, analyzer: FaceAnalyzer | None, pose_photo=None, face_index: int = 0) -> FaceCondition:
    """`face_photos` analysed, or returned as is when it is already a FaceCondition (then with the keypoints
    of `pose_photo`, if given)."""
    if isinstance(face_photos, FaceCondition):
        return with_pose_from(face_photos, analyzer, pose_photo) if pose_photo is not None else face_photos
    return face_condition(face_photos, analyzer, pose_photo, face_index=face_index)


def with_pose_from(condition: FaceCondition, analyzer: FaceAnalyzer | None, pose_photo) -> FaceCondition:
    """`condition` with its keypoints taken from the largest face of `pose_photo`."""
    from ..face.image import image_size

    if analyzer is None:
        raise UsageError("a pose photo needs a face analyzer: pass analyzer=get_face_analyzer(...)")
    face = pick_face(analyzer, pose_photo, 0, what=f"the pose photo {_name(pose_photo)}", flag=None,
                     need="; it supplies the keypoints")
    return replace(condition, kps=np.asarray(face.kps), pose_size=image_size(pose_photo))


def check_embedding_size(embedding, pipe, backend: str | None = None) -> None:
    """A face backend's embedding fits the loaded adapter (antelopev2 512-d, dlib 128-d): call_checks.check_embedding."""
    from .call_checks import check_embedding

    check_embedding(embedding, pipe.face_embedding_dim, f"the '{backend}' face backend gives" if backend else
                    "the face embedding has")
